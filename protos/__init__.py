"""Wire types shared by the control plane and the sidecar.

`protos/*.proto` are Pointsman's own API definitions; the Envoy v3 messages come from the
`xds-protos` package. This package holds the few helpers both halves need to read them:
the type registry (`registry`), YAML/JSON loading into messages (`loader`) and the one
configuration error type (`errors`).
"""
