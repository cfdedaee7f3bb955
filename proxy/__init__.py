"""Pointsman's sidecar proxy."""
