"""Enum names in any case, as Envoy's config parser takes them (`codec_type: auto`).

Envoy parses YAML/JSON config with protobuf's JSON parser and `case_insensitive_enum_parsing`
(MessageUtil::loadFromJsonNoThrow, source/common/protobuf/utility.cc): an enum string that is
not a value name is tried again in UPPER CASE, so `auto`, `Auto` and `aUtO` are all `AUTO`,
while `http_2` or ` AUTO` stay errors. Python's json_format has no such option, so
`upper_enum_names` rewrites those strings before parsing, walking the document beside the
message descriptors (through `@type` in `Any`, map values and repeated fields).
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor

# Well-known types with their own JSON form: nothing inside them is a proto enum field.
_OPAQUE = {
    "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
    "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.FieldMask",
    "google.protobuf.Empty", "google.protobuf.BoolValue", "google.protobuf.StringValue",
    "google.protobuf.BytesValue", "google.protobuf.Int32Value", "google.protobuf.Int64Value",
    "google.protobuf.UInt32Value", "google.protobuf.UInt64Value", "google.protobuf.FloatValue",
    "google.protobuf.DoubleValue",
}
_ANY = "google.protobuf.Any"


def upper_enum_names(obj: Any, descriptor: Any) -> Any:
    """A copy of `obj` (the JSON form of a `descriptor` message) in which every enum value
    that only matches a value name in upper case is upper-cased; anything else unchanged."""
    if not isinstance(obj, dict) or descriptor.full_name in _OPAQUE:
        return obj
    if descriptor.full_name == _ANY:
        return _any(obj)
    fields = _fields(descriptor)
    return {key: _value(fields[key], value) if key in fields else value
            for key, value in obj.items()}


@functools.cache
def _fields(descriptor: Any) -> dict[str, Any]:
    """Fields by proto name and by JSON name: protobuf's JSON parser accepts both (once per
    message type)."""
    found: dict[str, Any] = {}
    for field in descriptor.fields:
        found[field.name] = field
        found[field.json_name] = field
    return found


def _any(obj: dict[str, Any]) -> Any:
    type_url = obj.get("@type")
    if not isinstance(type_url, str):
        return obj
    try:
        packed = descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return obj  # protos.loader names the unknown @type
    if packed.full_name in _OPAQUE or packed.full_name == _ANY:
        return obj  # {"@type": ..., "value": ...}
    return {"@type": type_url,
            **upper_enum_names({k: v for k, v in obj.items() if k != "@type"}, packed)}


def _value(field: Any, value: Any) -> Any:
    if _is_map(field):
        value_field = field.message_type.fields_by_name["value"]
        if isinstance(value, dict):
            return {key: _single(value_field, item) for key, item in value.items()}
        return value
    if field.is_repeated and isinstance(value, list):
        return [_single(field, item) for item in value]
    return _single(field, value)


def _single(field: Any, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        if isinstance(value, str) and value not in field.enum_type.values_by_name \
                and value.upper() in field.enum_type.values_by_name:
            return value.upper()
        return value
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return upper_enum_names(value, field.message_type)
    return value


def _is_map(field: Any) -> bool:
    return bool(field.type == FieldDescriptor.TYPE_MESSAGE
                and field.message_type.GetOptions().map_entry)
