"""The management API (protos/pointsman/mesh/v1/mesh.proto): apply, delete, get, list, watch,
sidecar status and describe, over a store (controlplane/store)."""
