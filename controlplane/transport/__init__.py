"""xDS over our own HTTP/2 (libnghttp2 through `ngh2`) instead of grpcio: `--xds-transport
native` (docs/controlplane.md, "The native xDS transport")."""
