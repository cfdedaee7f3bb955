"""The mesh compiler: resolved mesh objects -> per-sidecar Envoy v3 resources (plain protobuf
messages packed once and shared between the sidecars that see the same thing)."""
