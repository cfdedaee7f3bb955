"""Pointsman's xDS control plane."""
