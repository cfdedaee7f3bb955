"""Deploying a sidecar beside an application: `pointsman sidecar` (the bootstrap built from a
few flags) and `pointsman run` (the sidecar and the application, started and stopped in order).
docs/deploy.md is the user's page."""
