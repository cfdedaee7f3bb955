"""Secret proto -> model, and the bootstrap's static secrets.

Envoy (configuration/security/secret): `static_resources.secrets` are named TLS certificates
and validation contexts that TLS contexts reference through an SdsSecretConfig carrying only
a `name`. They are fixed for the life of the process, so they are kept in one registry that
proxy.model.tls reads while translating. Certificates and validation contexts (inline or
in a secret) are translated here.

SDS (configuration/security/secret, "SDS configuration"): an SdsSecretConfig with an
`sds_config` names a secret fetched over xDS, either on the ADS stream (`ads: {}`) or from
its own SecretDiscoveryService stream to a static cluster (`api_config_source`, api_type GRPC,
one `envoy_grpc` service). Those secrets are kept in `DYNAMIC` (the sidecar's SDS state:
proxy.server applies updates there), and the TLS contexts that use them are bound to it
(proxy.model.tls.TlsBinding): a new version of a secret is loaded into their SSL contexts,
for new handshakes only.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable, Mapping
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
class SanMatcher:
    """CertificateValidationContext.match_typed_subject_alt_names[]: a SAN of `san_type`
    (URI, DNS, EMAIL, IP_ADDRESS) matching `matcher`."""

    san_type: str
    matcher: Any  # proxy.model.matchers.StringMatcher

    def matches(self, sans: Iterable[tuple[str, str]]) -> bool:
        return any(kind == self.san_type and self.matcher.matches(value)
                   for kind, value in sans)


@dataclass(frozen=True)
class ValidationContext:
    trusted_ca: bytes | None
    san_matchers: tuple[SanMatcher, ...] = ()


@dataclass(frozen=True)
class SdsSource:
    """Where an SDS secret comes from: the ADS stream, or an SDS stream to `cluster`."""

    cluster: str = ""  # "" is ADS

    @property
    def ads(self) -> bool:
        return not self.cluster


@dataclass(frozen=True)
class SdsRef:
    """A secret a TLS context waits for: `kind` tls_certificate or validation_context."""

    name: str
    source: SdsSource
    kind: str


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


class SecretRegistry:
    """The secrets received over SDS, by name, and the TLS contexts to reload when one
    changes (held weakly: a context goes with the listener or cluster model holding it)."""

    def __init__(self) -> None:
        self._secrets: dict[str, Secret] = {}
        self._bound: dict[str, weakref.WeakSet[Any]] = {}

    def __repr__(self) -> str:
        return f"SecretRegistry({sorted(self._secrets)})"

    def get(self, name: str) -> Secret | None:
        return self._secrets.get(name)

    def names(self) -> set[str]:
        return set(self._secrets)

    def bind(self, names: Iterable[str], binding: Any) -> None:
        for name in names:
            self._bound.setdefault(name, weakref.WeakSet()).add(binding)

    def update(self, secrets: Mapping[str, Secret]) -> None:
        """New versions: every TLS context bound to one of them loads it (`reload()`)."""
        changed = {name for name, secret in secrets.items() if self._secrets.get(name) != secret}
        self._secrets.update(secrets)
        bindings = {binding for name in changed for binding in self._bound.get(name, ())}
        for binding in bindings:
            binding.reload()

    def keep_only(self, names: set[str]) -> None:
        self._secrets = {name: item for name, item in self._secrets.items() if name in names}

    def clear(self) -> None:
        self._secrets.clear()
        self._bound.clear()


DYNAMIC = SecretRegistry()


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
    reject_unsupported(message, {"trusted_ca", "match_typed_subject_alt_names"}, prefix=prefix)
    trusted = None
    if message.HasField("trusted_ca"):
        trusted = read_data_source(message.trusted_ca, prefix + "trusted_ca")
    matchers = tuple(_san_matcher(item, f"{prefix}match_typed_subject_alt_names[{index}]")
                     for index, item in enumerate(message.match_typed_subject_alt_names))
    return ValidationContext(trusted, matchers)


_SAN_TYPES = {1: "EMAIL", 2: "DNS", 3: "URI", 4: "IP_ADDRESS"}  # common.proto SanType


def _san_matcher(message: Any, field_name: str) -> SanMatcher:
    from proxy.model.matchers import translate_string_matcher, within

    reject_unsupported(message, {"san_type", "matcher"}, prefix=field_name + ".")
    san_type = _SAN_TYPES.get(message.san_type)
    if san_type is None:  # SAN_TYPE_UNSPECIFIED or OTHER_NAME (needs `oid`)
        raise ConfigError("san_type must be EMAIL, DNS, URI or IP_ADDRESS",
                          field=field_name + ".san_type")
    if not message.HasField("matcher"):
        raise ConfigError("a matcher is required", field=field_name + ".matcher")
    matcher = within(field_name + ".matcher", translate_string_matcher, message.matcher)
    return SanMatcher(san_type, matcher)


def translate_sds_source(config: Any, field_name: str) -> SdsSource:
    """SdsSecretConfig.sds_config (a ConfigSource): `ads: {}`, or an api_config_source of
    api_type GRPC with one envoy_grpc service naming a cluster."""
    reject_unsupported(config, {"ads", "api_config_source", "resource_api_version"},
                       prefix=field_name + ".")
    kind = config.WhichOneof("config_source_specifier")
    if kind == "ads":
        return SdsSource()
    if kind != "api_config_source":
        raise ConfigError("sds_config must be ads or api_config_source (GRPC)",
                          field=field_name)
    api = config.api_config_source
    prefix = field_name + ".api_config_source."
    reject_unsupported(api, {"api_type", "grpc_services", "transport_api_version"},
                       prefix=prefix)
    if api.api_type != 2:  # ApiConfigSource.GRPC
        raise ConfigError("only api_type GRPC is supported for SDS", field=prefix + "api_type")
    if len(api.grpc_services) != 1 or not api.grpc_services[0].HasField("envoy_grpc"):
        raise ConfigError("exactly one grpc_services entry with envoy_grpc is supported",
                          field=prefix + "grpc_services")
    service = api.grpc_services[0]
    reject_unsupported(service, {"envoy_grpc"}, prefix=prefix + "grpc_services[0].")
    reject_unsupported(service.envoy_grpc, {"cluster_name"},
                       prefix=prefix + "grpc_services[0].envoy_grpc.")
    if not service.envoy_grpc.cluster_name:
        raise ConfigError("a cluster_name is required",
                          field=prefix + "grpc_services[0].envoy_grpc.cluster_name")
    return SdsSource(service.envoy_grpc.cluster_name)


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
