"""Secret proto -> model, and the bootstrap's static secrets.

Envoy (configuration/security/secret): `static_resources.secrets` are named TLS certificates
and validation contexts that TLS contexts reference through an SdsSecretConfig carrying only
a `name`. They are fixed for the life of the process, so they are kept in one registry that
proxy.model.tls reads while translating. Certificates and validation contexts (inline or
in a secret) are translated here. SDS (secrets over xDS) is not supported: an
SdsSecretConfig with `sds_config` is refused by name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from protos.errors import ConfigError
from proxy.model.fields import reject_unsupported


@dataclass(frozen=True)
class TlsCertificate:
    certificate_chain: bytes
    private_key: bytes


@dataclass(frozen=True)
class ValidationContext:
    trusted_ca: bytes | None


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


def translate_certificate(message: Any, prefix: str) -> TlsCertificate:
    reject_unsupported(message, {"certificate_chain", "private_key"}, prefix=prefix)
    if not message.HasField("certificate_chain") or not message.HasField("private_key"):
        raise ConfigError("both certificate_chain and private_key are required",
                          field=prefix.rstrip("."))
    return TlsCertificate(read_data_source(message.certificate_chain, prefix + "certificate_chain"),
                          read_data_source(message.private_key, prefix + "private_key"))


def translate_validation(message: Any, prefix: str) -> ValidationContext:
    reject_unsupported(message, {"trusted_ca"}, prefix=prefix)
    trusted = None
    if message.HasField("trusted_ca"):
        trusted = read_data_source(message.trusted_ca, prefix + "trusted_ca")
    return ValidationContext(trusted)


def read_data_source(source: Any, field_name: str) -> bytes:
    """envoy.config.core.v3.DataSource: filename, inline_bytes, inline_string, env variable."""
    kind = source.WhichOneof("specifier")
    if kind == "filename":
        try:
            return Path(source.filename).read_bytes()
        except OSError as error:
            raise ConfigError(f"cannot read {source.filename!r}: {error.strerror}",
                              field=field_name + ".filename") from error
    if kind == "inline_bytes":
        return bytes(source.inline_bytes)
    if kind == "inline_string":
        return str(source.inline_string).encode()
    if kind == "environment_variable":
        value = os.environ.get(source.environment_variable)
        if value is None:
            raise ConfigError(f"environment variable {source.environment_variable!r} is unset",
                              field=field_name + ".environment_variable")
        return value.encode()
    raise ConfigError("the data source is empty", field=field_name)
