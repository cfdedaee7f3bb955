"""The protobuf wire format by hand, for OTLP (traces, metrics, logs alike).

Why by hand: the generated `opentelemetry.proto` classes are not safe to import in a plain
`pip install`: xds-protos ships an old copy of the same package (for Envoy's OpenTelemetry
access logger protos) that can overwrite opentelemetry-proto's, and the old copy lacks
InstrumentationScope and the `scope_*` fields. Our exporters therefore encode the few messages
they send themselves, from the field numbers of opentelemetry/proto/{common,resource}/v1 (the
tests decode the output with the generated classes), and import no `opentelemetry.proto`.
Also cheaper: see proxy.observability.tracing.otlp.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

AttributeValue = str | bool | int | float


def varint(value: int) -> bytes:
    """Protobuf base-128 varint; the one- and two-byte cases (tags, most lengths) directly."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


_KEY_CACHE: dict[str, bytes] = {}


def _key(name: str) -> bytes:
    encoded = _KEY_CACHE.get(name)
    if encoded is None:
        if len(_KEY_CACHE) > 4096:
            _KEY_CACHE.clear()
        encoded = _KEY_CACHE[name] = length_delimited(1, name.encode())
    return encoded


def any_value(value: AttributeValue) -> bytes:
    """An AnyValue message's fields (string 1, bool 2, int 3, double 4)."""
    if isinstance(value, bool):  # before int: bool is an int
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return b"\x21" + struct.pack("<d", value)
    return length_delimited(1, str(value).encode())


# Most attribute values repeat (method, cluster, status, flags): cache whole encoded KeyValues,
# except for keys whose values are (nearly) unique per request, which would only churn it.
_KEY_VALUE_CACHE: dict[tuple[int, str, type, AttributeValue], bytes] = {}
UNCACHED_KEYS = frozenset({"guid:x-request-id", "url.full", "url.query", "client.port",
                           "http.request.body.size", "http.response.body.size",
                           "network.io.bytes_received", "network.io.bytes_sent",
                           "xds.nonce", "xds.version"})


def encode_attributes(number: int, attributes: Iterable[tuple[str, AttributeValue]]) -> bytes:
    parts = []
    cache = _KEY_VALUE_CACHE
    for key, value in attributes:
        if key in UNCACHED_KEYS:
            parts.append(length_delimited(
                number, _key(key) + length_delimited(2, any_value(value))))
            continue
        cache_key = (number, key, type(value), value)
        encoded = cache.get(cache_key)
        if encoded is None:
            encoded = length_delimited(number, _key(key) + length_delimited(2, any_value(value)))
            if len(cache) > 65536:
                cache.clear()
            cache[cache_key] = encoded
        parts.append(encoded)
    return b"".join(parts)


def fixed64(number: int, value: int) -> bytes:
    """A fixed64 (or sfixed64) field: wire type 1, 8 bytes little-endian."""
    return tag(number, 1) + struct.pack("<q" if value < 0 else "<Q", value)


def double(number: int, value: float) -> bytes:
    return tag(number, 1) + struct.pack("<d", value)


def packed_fixed64(number: int, values: Sequence[int]) -> bytes:
    return length_delimited(number, struct.pack(f"<{len(values)}Q", *values)) if values else b""


def packed_double(number: int, values: Sequence[float]) -> bytes:
    return length_delimited(number, struct.pack(f"<{len(values)}d", *values)) if values else b""


def enum(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value) if value else b""


def encode_resource(attributes: Sequence[tuple[str, AttributeValue]]) -> bytes:
    """Resource{Spans,Metrics,Logs}.resource (field 1 in each), encoded once per pipeline."""
    return length_delimited(1, encode_attributes(1, attributes))


def encode_scope(name: str, version: str = "") -> bytes:
    """Scope{Spans,Metrics,Logs}.scope (field 1 in each): an InstrumentationScope."""
    body = length_delimited(1, name.encode())
    if version:
        body += length_delimited(2, version.encode())
    return length_delimited(1, body)
