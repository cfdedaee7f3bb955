"""Sensitive fields out of /config_dump, as Envoy's admin does (MessageUtil::redact, source/
common/protobuf/utility.cc): every field marked `(udpa.annotations.sensitive) = true` in the
API protos (private keys, passwords, session ticket keys, generic secrets...) is replaced,
anywhere in the message, Any-packed configuration included: a string by "[redacted]", bytes
by b"[redacted]" (base64 "W3JlZGFjdGVkXQ==" in JSON), a message by its redacted copy whose
leaves are all redacted."""

from __future__ import annotations

from google.protobuf import any_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from udpa.annotations import sensitive_pb2

from protos.errors import ConfigError
from protos.loader import pack_any, unpack_any

REDACTED = "[redacted]"


def redacted(message: Message) -> Message:
    copy = type(message)()
    copy.CopyFrom(message)
    _redact(copy, sensitive=False)
    return copy


def _is_sensitive(field: FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[sensitive_pb2.sensitive])


def _redact(message: Message, *, sensitive: bool) -> None:
    if isinstance(message, any_pb2.Any):
        _redact_any(message, sensitive)
        return
    for field, value in message.ListFields():
        hidden = sensitive or _is_sensitive(field)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                continue  # maps (Struct-like metadata) hold nothing sensitive in the API
            items = value if _repeated(field) else [value]
            for item in items:
                _redact(item, sensitive=hidden)
        elif hidden:
            _replace_scalar(message, field)


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _replace_scalar(message: Message, field: FieldDescriptor) -> None:
    if field.type == FieldDescriptor.TYPE_STRING:
        replacement: object = REDACTED
    elif field.type == FieldDescriptor.TYPE_BYTES:
        replacement = REDACTED.encode()
    else:
        return  # numbers and enums stay, as in Envoy
    if _repeated(field):
        values = getattr(message, field.name)
        values[:] = [replacement] * len(values)
    else:
        setattr(message, field.name, replacement)


def _redact_any(packed: any_pb2.Any, sensitive: bool) -> None:
    try:
        inner = unpack_any(packed)
    except ConfigError:
        return  # a type we do not know: shown as received (nothing of ours is in it)
    _redact(inner, sensitive=sensitive)
    packed.CopyFrom(pack_any(inner))
