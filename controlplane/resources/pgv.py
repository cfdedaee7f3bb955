"""Envoy's own field constraints (protoc-gen-validate annotations in the API protos), enforced
before publishing, naming the field.

Envoy validates every resource against the `(validate.rules)` options of its .proto files and
rejects the update when one fails ("Proto constraint validation failed"); we apply the same rules
so a bad value is refused at the file, not NACKed by every client. Supported: message
`required`/`skip`, oneof `required`, numeric `const/lt/lte/gt/gte/in/not_in`, `bool.const`,
string `const/len/min_len/max_len/min_bytes/max_bytes/prefix/suffix/contains/not_contains/in/
not_in/pattern` and the HTTP header well-known regexes, bytes lengths, enum `defined_only/const/
in/not_in`, repeated `min_items/max_items/unique/items`, map `min_pairs/max_pairs/keys/values`,
duration and any rules, wrapper types (UInt32Value...). Not checked: the string formats email,
hostname, ip, uri, address, uuid, and timestamp rules (Envoy's API barely uses them).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterable
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from validate import validate_pb2

from protos.errors import ConfigError
from protos.loader import unpack_any

ANY = "google.protobuf.Any"
DURATION = "google.protobuf.Duration"
WRAPPERS = {f"google.protobuf.{name}Value" for name in (
    "Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")}
NUMERIC = {"float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
           "fixed32", "fixed64", "sfixed32", "sfixed64"}
# protoc-gen-validate's KnownRegex definitions (validate.proto).
HEADER_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
HEADER_VALUE = re.compile(r"^[^\u0000-\u0008\u000A-\u001F\u007F]*$")
HEADER_LOOSE = re.compile(r"^[^\u0000\u000A\u000D]*$")


def validate_message(message: Message, path: str = "") -> None:
    """Raise ConfigError for the first constraint `message` (or anything inside) breaks."""
    if message.DESCRIPTOR.full_name == ANY:
        if message.type_url:  # type: ignore[attr-defined]
            validate_message(unpack_any(message, field=path), path)  # type: ignore[arg-type]
        return
    descriptor = message.DESCRIPTOR
    if _message_skipped(descriptor):
        return
    for oneof in descriptor.oneofs:
        if _oneof_required(oneof) and message.WhichOneof(oneof.name) is None:
            choices = ", ".join(field.name for field in oneof.fields)
            raise ConfigError(f"one of {choices} is required", field=_join(path, oneof.name))
    present: set[str] | None = None
    for field, ruled in _relevant_fields(descriptor):
        if not ruled:  # a message field without rules of its own: only its content matters
            if present is None:
                present = {item.name for item, _ in message.ListFields()}
            if field.name not in present:
                continue
        _check_field(message, field, _join(path, field.name))


@functools.cache
def _relevant_fields(descriptor: Descriptor) -> tuple[tuple[FieldDescriptor, bool], ...]:
    """The fields that can break a rule, in declaration order: those with rules (checked even
    when unset: a rule applies to the default value too) and message fields (their content
    may). A scalar field without rules never can. Computed once per message type."""
    found = []
    for field in descriptor.fields:
        field = cast(FieldDescriptor, field)
        ruled = _rules(field) is not None
        if ruled or field.type == FieldDescriptor.TYPE_MESSAGE:
            found.append((field, ruled))
    return tuple(found)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


@functools.cache
def _message_skipped(descriptor: Descriptor) -> bool:
    options = descriptor.GetOptions()
    return bool(options.Extensions[validate_pb2.disabled]
                or options.Extensions[validate_pb2.ignored])


@functools.cache
def _oneof_required(oneof: Any) -> bool:
    return bool(oneof.GetOptions().Extensions[validate_pb2.required])


@functools.cache
def _rules(field: FieldDescriptor) -> validate_pb2.FieldRules | None:
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.rules):
        return None
    rules: validate_pb2.FieldRules = options.Extensions[validate_pb2.rules]
    return rules


def _check_field(message: Message, field: FieldDescriptor, path: str) -> None:
    if field.containing_oneof is not None and \
            message.WhichOneof(field.containing_oneof.name) != field.name:
        return  # only the chosen member of a oneof is validated
    rules = _rules(field)
    value = getattr(message, field.name)
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if is_message and field.message_type is not None and field.message_type.GetOptions().map_entry:
        _check_map(field, value, rules, path)
    elif field.is_repeated:
        _check_repeated(field, value, rules, path)
    elif is_message:
        present = message.HasField(field.name)
        if rules is not None:
            _check_message_rules(rules, value if present else None, path)
        if present and not (rules is not None and rules.message.skip):
            validate_message(value, path)
    elif rules is not None:
        if field.has_presence and not message.HasField(field.name):
            return
        _check_value(rules, value, path, field)


def _check_repeated(field: FieldDescriptor, values: Any, rules: validate_pb2.FieldRules | None,
                    path: str) -> None:
    if rules is not None and rules.HasField("repeated"):
        repeated = rules.repeated
        if not (repeated.ignore_empty and not values):
            _bounds(len(values), repeated, "min_items", "max_items", "items", path)
            if repeated.unique and len({_hashable(item) for item in values}) != len(values):
                raise ConfigError("items must be unique", field=path)
        if repeated.HasField("items"):
            for index, item in enumerate(values):
                _check_item(repeated.items, item, f"{path}[{index}]", field)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        for index, item in enumerate(values):
            validate_message(item, f"{path}[{index}]")


def _check_map(field: FieldDescriptor, values: Any, rules: validate_pb2.FieldRules | None,
               path: str) -> None:
    assert field.message_type is not None
    value_field = field.message_type.fields_by_name["value"]
    key_field = field.message_type.fields_by_name["key"]
    if rules is not None and rules.HasField("map"):
        pairs = rules.map
        if not (pairs.ignore_empty and not values):
            _bounds(len(values), pairs, "min_pairs", "max_pairs", "pairs", path)
        for key in values:
            if pairs.HasField("keys"):
                _check_item(pairs.keys, key, f"{path}[{key!r}]", key_field)
            if pairs.HasField("values"):
                _check_item(pairs.values, values[key], f"{path}[{key!r}]", value_field)
    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
        for key, item in values.items():
            validate_message(item, f"{path}[{key!r}]")


def _check_item(rules: validate_pb2.FieldRules, item: Any, path: str,
                field: FieldDescriptor) -> None:
    if isinstance(item, Message):
        _check_message_rules(rules, item, path)
    else:
        _check_value(rules, item, path, field)


def _check_message_rules(rules: validate_pb2.FieldRules, value: Message | None,
                         path: str) -> None:
    kind = rules.WhichOneof("type")
    required = rules.message.required or (kind in ("duration", "any", "timestamp")
                                          and getattr(rules, kind).required)
    if value is None:
        if required:
            raise ConfigError("value is required", field=path)
        return
    name = value.DESCRIPTOR.full_name
    if kind == "duration" and name == DURATION:
        _check_duration(rules.duration, value, path)
    elif kind == "any" and name == ANY:
        type_url = value.type_url  # type: ignore[attr-defined]
        allowed = list(getattr(rules.any, "in"))
        if allowed and type_url not in allowed:
            raise ConfigError(f"type {type_url!r} is not one of {allowed}", field=path)
        if type_url in rules.any.not_in:
            raise ConfigError(f"type {type_url!r} is not allowed here", field=path)
    elif kind is not None and name in WRAPPERS:
        _check_value(rules, value.value, path, None)  # type: ignore[attr-defined]


def _check_duration(rules: validate_pb2.DurationRules, value: Message, path: str) -> None:
    def nanos(duration: Any) -> int:
        return int(duration.seconds) * 1_000_000_000 + int(duration.nanos)

    actual = nanos(value)
    shown = f"{actual / 1e9:g}s"
    checks = (("const", lambda bound: actual == bound, "equal"),
              ("lt", lambda bound: actual < bound, "less than"),
              ("lte", lambda bound: actual <= bound, "at most"),
              ("gt", lambda bound: actual > bound, "greater than"),
              ("gte", lambda bound: actual >= bound, "at least"))
    for name, holds, words in checks:
        if rules.HasField(name):
            bound = nanos(getattr(rules, name))
            if not holds(bound):
                raise ConfigError(f"duration {shown} must be {words} {bound / 1e9:g}s",
                                  field=path)


def _check_value(rules: validate_pb2.FieldRules, value: Any, path: str,
                 field: FieldDescriptor | None) -> None:
    kind = rules.WhichOneof("type")
    if kind in NUMERIC:
        _check_number(getattr(rules, kind), value, path)
    elif kind == "bool" and rules.bool.HasField("const") and value != rules.bool.const:
        raise ConfigError(f"must be {rules.bool.const}", field=path)
    elif kind == "string":
        _check_string(rules.string, value, path)
    elif kind == "bytes":
        data = rules.bytes
        if not (data.ignore_empty and not value):
            _bounds(len(value), data, "min_len", "max_len", "bytes", path)
    elif kind == "enum":
        _check_enum(rules.enum, value, path, field)


def _check_number(rules: Any, value: Any, path: str) -> None:
    if rules.ignore_empty and not value:
        return
    if rules.HasField("const") and value != rules.const:
        raise ConfigError(f"value {value} must equal {rules.const}", field=path)
    for name, holds, words in (("lt", operator.lt, "less than"),
                               ("lte", operator.le, "at most"),
                               ("gt", operator.gt, "greater than"),
                               ("gte", operator.ge, "at least")):
        if rules.HasField(name) and not holds(value, getattr(rules, name)):
            raise ConfigError(f"value {value} must be {words} {getattr(rules, name)}",
                              field=path)
    _membership(value, rules, path)


def _check_string(rules: validate_pb2.StringRules, value: str, path: str) -> None:
    if rules.ignore_empty and not value:
        return
    if rules.HasField("const") and value != rules.const:
        raise ConfigError(f"must be {rules.const!r}", field=path)
    length = len(value)
    if rules.HasField("len") and length != rules.len:
        raise ConfigError(f"length must be {rules.len}", field=path)
    _bounds(length, rules, "min_len", "max_len", "characters", path)
    _bounds(len(value.encode()), rules, "min_bytes", "max_bytes", "bytes", path)
    for name, holds, words in (("prefix", value.startswith, "start with"),
                               ("suffix", value.endswith, "end with"),
                               ("contains", value.__contains__, "contain")):
        if rules.HasField(name) and not holds(getattr(rules, name)):
            raise ConfigError(f"{value!r} must {words} {getattr(rules, name)!r}", field=path)
    if rules.HasField("not_contains") and rules.not_contains in value:
        raise ConfigError(f"{value!r} must not contain {rules.not_contains!r}", field=path)
    _membership(value, rules, path)
    if rules.HasField("pattern") and not _search(rules.pattern, value):
        raise ConfigError(f"{value!r} does not match {rules.pattern!r}", field=path)
    if rules.HasField("well_known_regex"):
        _check_header(rules, value, path)


def _check_header(rules: validate_pb2.StringRules, value: str, path: str) -> None:
    strict = not rules.HasField("strict") or rules.strict
    known = rules.well_known_regex
    if known == validate_pb2.HTTP_HEADER_NAME:
        pattern, what = (HEADER_NAME if strict else HEADER_LOOSE), "an HTTP header name"
    elif known == validate_pb2.HTTP_HEADER_VALUE:
        pattern, what = (HEADER_VALUE if strict else HEADER_LOOSE), "an HTTP header value"
    else:
        return
    if not pattern.match(value):
        raise ConfigError(f"{value!r} is not a valid {what}", field=path)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None  # an RE2 construct Python lacks: leave it to the client


def _search(pattern: str, value: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is None or compiled.search(value) is not None


def _check_enum(rules: validate_pb2.EnumRules, value: int, path: str,
                field: FieldDescriptor | None) -> None:
    if rules.HasField("const") and value != rules.const:
        raise ConfigError(f"must be {rules.const}", field=path)
    if rules.defined_only and field is not None and field.enum_type is not None and \
            value not in field.enum_type.values_by_number:
        raise ConfigError(f"{value} is not a defined {field.enum_type.name} value", field=path)
    _membership(value, rules, path)


def _membership(value: Any, rules: Any, path: str) -> None:
    allowed: Iterable[Any] = getattr(rules, "in")
    if allowed and value not in list(allowed):
        raise ConfigError(f"{value!r} must be one of {list(allowed)}", field=path)
    if value in list(rules.not_in):
        raise ConfigError(f"{value!r} is not allowed", field=path)


def _bounds(count: int, rules: Any, low: str, high: str, unit: str, path: str) -> None:
    if rules.HasField(low) and count < getattr(rules, low):
        raise ConfigError(f"needs at least {getattr(rules, low)} {unit}, has {count}", field=path)
    if rules.HasField(high) and count > getattr(rules, high):
        raise ConfigError(f"allows at most {getattr(rules, high)} {unit}, has {count}", field=path)


def _hashable(item: Any) -> Any:
    return item.SerializeToString(deterministic=True) if isinstance(item, Message) else item
