"""Secret (SDS): named by `name`; no references. Secrets never travel in clear text off
loopback: main.py refuses a non-loopback listen address without --tls-cert."""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf.message import Message

from controlplane.resources.base import ResourceType, require_name
from controlplane.resources.walk import Reference
from protos import registry
from protos.errors import ConfigError


def name_of(message: Message) -> str:
    return str(message.name)  # type: ignore[attr-defined]


def references(message: Message) -> list[Reference]:
    return []


def validate(message: Message) -> None:
    assert isinstance(message, secret_pb2.Secret)
    require_name(message.name)
    if message.WhichOneof("type") is None:
        raise ConfigError("one of tls_certificate, validation_context, session_ticket_keys "
                          "or generic_secret is required", field="tls_certificate")


SECRET = ResourceType(
    type_url=registry.SECRET, short_name="secret", message_class=secret_pb2.Secret,
    name_of=name_of, references=references, validate=validate,
)
