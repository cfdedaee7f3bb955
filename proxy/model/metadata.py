"""Endpoint metadata as the data path compares it: google.protobuf Struct/Value made hashable.

Only what Envoy itself reads from endpoint metadata is kept: the `envoy.transport_socket_match`
struct (cluster.proto TransportSocketMatch; proxy.model.socket_match). Values compare as
Envoy's ValueUtil::equal does: same kind and value (a bool is not the number 1), lists and
structs element by element.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

FILTER_KEY = "envoy.transport_socket_match"

# A protobuf Value made hashable and kind-exact (True is not 1, as in ValueUtil::equal).
MetaValue = tuple[Any, ...]
# The struct under `envoy.transport_socket_match`: its keys (sorted) and values.
SocketMetadata = tuple[tuple[str, MetaValue], ...]


def canonical_value(value: struct_pb2.Value) -> MetaValue:
    """A google.protobuf.Value as a tuple that compares as Envoy's ValueUtil::equal does."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return ("number", value.number_value)
    if kind == "string_value":
        return ("string", value.string_value)
    if kind == "bool_value":
        return ("bool", value.bool_value)
    if kind == "list_value":
        return ("list", tuple(canonical_value(item) for item in value.list_value.values))
    if kind == "struct_value":
        return ("struct", canonical_struct(value.struct_value))
    return ("null",)  # null_value, or no kind set


def canonical_struct(struct: struct_pb2.Struct) -> SocketMetadata:
    return tuple(sorted((key, canonical_value(item)) for key, item in struct.fields.items()))


def socket_metadata(metadata: Any) -> SocketMetadata | None:
    """The `envoy.transport_socket_match` struct of a core.v3.Metadata; None when absent."""
    if FILTER_KEY not in metadata.filter_metadata:
        return None
    return canonical_struct(metadata.filter_metadata[FILTER_KEY])
