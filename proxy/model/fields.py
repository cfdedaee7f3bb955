"""Refusing configuration we do not implement, by name (the rule: never ignore config silently).

Translators list the fields they implement (and the ones that are harmless to ignore, such as
names or metadata); any other field that is set raises `protos.errors.unsupported` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf import duration_pb2
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported


def reject_unsupported(message: Message, supported: Iterable[str], *, prefix: str = "") -> None:
    """Raise ConfigError naming the first set field of `message` not in `supported`."""
    allowed = set(supported)
    for descriptor, _value in message.ListFields():
        if descriptor.name not in allowed:
            raise unsupported(f"{prefix}{descriptor.name}")


def enum_name(message: Message, name: str) -> str:
    """The name of enum field `name`'s value (`CLUSTER_PROVIDED`, not 6), for messages."""
    value = getattr(message, name)
    enum_type = message.DESCRIPTOR.fields_by_name[name].enum_type
    found = enum_type.values_by_number.get(value) if enum_type is not None else None
    return found.name if found is not None else str(value)


def seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


def optional_seconds(message: Message, name: str, default: float | None) -> float | None:
    """A Duration field in seconds, `default` when unset; Envoy treats 0 as 'disabled'."""
    if not message.HasField(name):
        return default
    value = seconds(getattr(message, name))
    return value if value > 0 else None


def require(condition: bool, message: str, field: str) -> None:
    if not condition:
        raise ConfigError(message, field=field)
