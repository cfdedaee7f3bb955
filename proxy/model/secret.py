"""Secret proto -> model, and the bootstrap's static secrets.

Envoy (configuration/security/secret): `static_resources.secrets` are named TLS certificates
and validation contexts that TLS contexts reference through an SdsSecretConfig carrying only
a `name`. They are fixed for the life of the process, so they are kept in one registry that
proxy.transport.tls reads while translating. SDS (secrets over xDS) is not supported: an
SdsSecretConfig with `sds_config` is refused by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from protos.errors import ConfigError
from proxy.model.fields import reject_unsupported
from proxy.transport.tls import (
    TlsCertificate,
    ValidationContext,
    translate_certificate,
    translate_validation,
)


@dataclass(frozen=True)
class Secret:
    name: str
    tls_certificate: TlsCertificate | None = None
    validation_context: ValidationContext | None = None


_STATIC: dict[str, Secret] = {}


def translate_secret(message: secret_pb2.Secret) -> Secret:
    try:
        reject_unsupported(message, {"name", "tls_certificate", "validation_context"})
        if not message.name:
            raise ConfigError("a secret needs a name", field="name")
        kind = message.WhichOneof("type")
        if kind == "tls_certificate":
            return Secret(message.name,
                          tls_certificate=translate_certificate(message.tls_certificate,
                                                                "tls_certificate."))
        if kind == "validation_context":
            return Secret(message.name, validation_context=translate_validation(
                message.validation_context, "validation_context."))
        raise ConfigError("a secret needs tls_certificate or validation_context",
                          field="tls_certificate")
    except ConfigError as error:
        raise error.within(resource=message.name) from error


def set_static_secrets(secrets: Iterable[Secret]) -> None:
    """Install the bootstrap's static secrets (before translating what references them)."""
    _STATIC.clear()
    _STATIC.update({secret.name: secret for secret in secrets})


def static_secret(name: str) -> Secret | None:
    return _STATIC.get(name)
