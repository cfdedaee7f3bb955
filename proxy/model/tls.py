"""`envoy.transport_sockets.tls`: DownstreamTlsContext / UpstreamTlsContext -> ssl.SSLContext.

Translated once, at config time (bad certificates are config errors naming the field), into a
frozen model that carries the ready `ssl.SSLContext`. Behaviour follows Envoy's docs
(api/envoy/extensions/transport_sockets/tls/v3/{tls,common}.proto):
- downstream: the chain's certificate; ALPN chosen from `alpn_protocols` by server preference;
  a client certificate is requested when a validation context is set and required when
  `require_client_certificate` is true.
- upstream: `sni` sent as SNI; the server chain is verified against `trusted_ca` when set
  (Envoy checks SANs only when `match_typed_subject_alt_names` is set, so no hostname check);
  a client certificate is presented for mTLS when `tls_certificates` is set.
- upstream sessions are resumed as Envoy resumes them, up to `max_session_keys`
  (proxy.transport.resumption);
- upstream PROXY protocol (ProxyProtocolUpstreamTransport, `config.version` V1/V2) wrapping
  TLS or raw_buffer: the header goes first, in clear, before any TLS handshake.
- secrets over SDS (`tls_certificate_sds_secret_configs`, `validation_context_sds_secret_config`,
  `combined_validation_context`; proxy.model.secret): the context's `TlsBinding` loads each
  version of them into the same SSLContext when it arrives (OpenSSL copies the certificate
  into each new connection, so open connections keep theirs and new handshakes get the new
  one; configuration/security/secret, "key rotation"). Until every secret it names arrived
  the context is `waiting` and the listener or cluster using it warms.
- `match_typed_subject_alt_names`: after the handshake the peer's certificate must have a SAN
  matching one of them, else the handshake fails (Envoy's `ssl.fail_verify_san`); checked
  only when the peer presented a certificate (a server that does not require one lets a
  client without one through, as Envoy does).
"""

from __future__ import annotations

import dataclasses
import ssl
from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2, proxy_protocol_pb2
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.model.fields import reject_unsupported
from proxy.model.secret import (
    SdsRef,
    TlsCertificate,
    ValidationContext,
    static_secret,
    translate_certificate,
    translate_sds_source,
    translate_validation,
)
from proxy.model.tls_binding import CommonTls, TlsBinding, check_secret
from proxy.transport.resumption import ResumingClientContext

__all__ = ["DownstreamTls", "TlsBinding", "UpstreamTls", "check_secret", "sds_refs",
           "translate_downstream_tls", "translate_upstream_tls", "waiting_for"]

TLS_SOCKET_NAME = "envoy.transport_sockets.tls"
RAW_BUFFER_TYPE = "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
DOWNSTREAM_TYPE = "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
UPSTREAM_TYPE = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
PROXY_PROTOCOL_TYPE = ("envoy.extensions.transport_sockets.proxy_protocol.v3."
                       "ProxyProtocolUpstreamTransport")

_VERSIONS = {
    common_pb2.TlsParameters.TLSv1_0: ssl.TLSVersion.TLSv1,
    common_pb2.TlsParameters.TLSv1_1: ssl.TLSVersion.TLSv1_1,
    common_pb2.TlsParameters.TLSv1_2: ssl.TLSVersion.TLSv1_2,
    common_pb2.TlsParameters.TLSv1_3: ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True)
class DownstreamTls:
    certificate: TlsCertificate | None  # None when it comes over SDS (binding.certificate)
    alpn_protocols: tuple[str, ...]
    validation: ValidationContext | None
    require_client_certificate: bool
    ssl_context: ssl.SSLContext = field(compare=False, repr=False)
    sds: tuple[SdsRef, ...] = ()
    binding: TlsBinding | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class UpstreamTls:
    """A cluster's transport socket: TLS origination when `ssl_context` is set, and/or a
    PROXY protocol header first (envoy.transport_sockets.upstream_proxy_protocol)."""

    sni: str = ""
    alpn_protocols: tuple[str, ...] = ()
    certificate: TlsCertificate | None = None
    validation: ValidationContext | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)
    proxy_protocol_version: int | None = None  # 1 or 2
    sds: tuple[SdsRef, ...] = ()
    binding: TlsBinding | None = field(default=None, compare=False, repr=False)
    quic: bool = False  # envoy.transport_sockets.quic (QuicUpstreamTransport): HTTP/3 upstream


def sds_refs(tls: DownstreamTls | UpstreamTls | None) -> tuple[SdsRef, ...]:
    return tls.sds if tls is not None else ()


def waiting_for(tls: DownstreamTls | UpstreamTls | None) -> tuple[str, ...]:
    """The SDS secrets this context still waits for (it warms until there are none)."""
    if tls is None or tls.binding is None:
        return ()
    return tls.binding.waiting()


def translate_downstream_tls(message: Message) -> DownstreamTls | None:
    """A listener chain's transport_socket (TransportSocket, Any or the context) -> model."""
    context = _unwrap(message, tls_pb2.DownstreamTlsContext, DOWNSTREAM_TYPE)
    if context is None:
        return None
    reject_unsupported(context, {"common_tls_context", "require_client_certificate"})
    common = context.common_tls_context
    translated = _translate_common(common, "common_tls_context.")
    if translated.certificate is None and translated.certificate_ref is None:
        raise ConfigError("a downstream TLS context needs one certificate",
                          field="common_tls_context.tls_certificates")
    require_client = context.HasField("require_client_certificate") and \
        context.require_client_certificate.value
    if require_client and translated.validation is None and translated.validation_ref is None:
        raise ConfigError("require_client_certificate needs a validation_context",
                          field="require_client_certificate")
    ssl_context = _server_context(common, translated.alpn)
    binding = TlsBinding(ssl_context, translated, server=True, require_client=require_client)
    binding.load(translated.certificate, translated.validation)
    binding.reload()  # what SDS already has
    static = None if translated.certificate_ref else translated.certificate
    return DownstreamTls(static, translated.alpn, translated.validation, require_client,
                         ssl_context, translated.refs, binding)


def translate_upstream_tls(message: Message) -> UpstreamTls | None:
    """A cluster's transport_socket (TransportSocket, Any or the context) -> model; None for
    plain TCP. The PROXY protocol transport socket may wrap TLS or raw_buffer."""
    proxy_protocol = _proxy_protocol_wrapper(message)
    if proxy_protocol is not None:
        return _translate_proxy_protocol(proxy_protocol)
    context = _unwrap(message, tls_pb2.UpstreamTlsContext, UPSTREAM_TYPE)
    if context is None:
        return None
    reject_unsupported(context, {"common_tls_context", "sni", "max_session_keys"})
    if context.allow_renegotiation:
        raise unsupported("allow_renegotiation")
    common = context.common_tls_context
    translated = _translate_common(common, "common_tls_context.")
    ssl_context = _client_context(common, translated.alpn)
    binding = TlsBinding(ssl_context, translated, server=False)
    binding.load(translated.certificate, translated.validation)
    binding.reload()
    # max_session_keys: sessions kept for resumption (tls.proto: default 1, 0 disables).
    ssl_context.configure_resumption(context.max_session_keys.value
                                     if context.HasField("max_session_keys") else 1)
    static = None if translated.certificate_ref else translated.certificate
    return UpstreamTls(context.sni, translated.alpn, static, translated.validation,
                       ssl_context, sds=translated.refs, binding=binding)


def _proxy_protocol_wrapper(message: Message) -> Any | None:
    packed = message.typed_config if isinstance(message, base_pb2.TransportSocket) else message
    if isinstance(packed, any_pb2.Any) and packed.type_url.endswith("/" + PROXY_PROTOCOL_TYPE):
        return unpack_any(packed)
    if isinstance(packed, upstream_proxy_protocol_pb2.ProxyProtocolUpstreamTransport):
        return packed
    return None


def _translate_proxy_protocol(message: Any) -> UpstreamTls:
    """envoy.transport_sockets.upstream_proxy_protocol: a v1/v2 header with the downstream
    connection's addresses, then the wrapped transport socket."""
    reject_unsupported(message, {"config", "transport_socket"})
    reject_unsupported(message.config, {"version"}, prefix="config.")
    version = 2 if message.config.version == proxy_protocol_pb2.ProxyProtocolConfig.V2 else 1
    inner = None
    if message.HasField("transport_socket"):
        try:
            inner = translate_upstream_tls(message.transport_socket)
        except ConfigError as error:
            raise error.within(field="typed_config.transport_socket") from error
    if inner is not None and inner.proxy_protocol_version is not None:
        raise ConfigError("PROXY protocol wrapped twice", field="typed_config.transport_socket")
    return dataclasses.replace(inner or UpstreamTls(), proxy_protocol_version=version)


def _unwrap(message: Message, cls: type[Any], type_name: str) -> Any | None:
    """Accept a TransportSocket, an Any, or the context itself; None for raw_buffer."""
    if isinstance(message, base_pb2.TransportSocket):
        if not message.HasField("typed_config"):
            if message.name in ("", "envoy.transport_sockets.raw_buffer"):
                return None
            raise ConfigError(f"transport socket {message.name!r} needs a typed_config",
                              field="typed_config")
        message = message.typed_config
    if isinstance(message, any_pb2.Any):
        if message.type_url.endswith("/" + RAW_BUFFER_TYPE):
            return None
        if not message.type_url.endswith("/" + type_name):
            raise ConfigError(f"transport socket {message.type_url!r} is not supported "
                              f"(expected {type_name} or raw_buffer)", field="typed_config")
        message = unpack_any(message)
    if not isinstance(message, cls):
        raise ConfigError(f"expected {type_name}, got {message.DESCRIPTOR.full_name}",
                          field="typed_config")
    return message


def _translate_common(common: Any, prefix: str) -> CommonTls:
    reject_unsupported(common, {"tls_params", "tls_certificates", "validation_context",
                                "alpn_protocols", "tls_certificate_sds_secret_configs",
                                "validation_context_sds_secret_config",
                                "combined_validation_context"}, prefix=prefix)
    if common.HasField("tls_params"):
        reject_unsupported(common.tls_params,
                           {"tls_minimum_protocol_version", "tls_maximum_protocol_version"},
                           prefix=prefix + "tls_params.")
    certificates: list[TlsCertificate | SdsRef] = [
        translate_certificate(item, f"{prefix}tls_certificates[{index}].")
        for index, item in enumerate(common.tls_certificates)
    ] + [
        _secret_ref(item, f"{prefix}tls_certificate_sds_secret_configs[{index}]",
                    "tls_certificate")
        for index, item in enumerate(common.tls_certificate_sds_secret_configs)
    ]
    if len(certificates) > 1:
        raise unsupported(prefix + "tls_certificates[1]", "one certificate per context")
    validation, validation_ref = _translate_validation(common, prefix)
    first = certificates[0] if certificates else None
    return CommonTls(first if isinstance(first, TlsCertificate) else None, validation,
                   tuple(common.alpn_protocols),
                   first if isinstance(first, SdsRef) else None, validation_ref)


def _translate_validation(common: Any, prefix: str
                          ) -> tuple[ValidationContext | None, SdsRef | None]:
    """validation_context, validation_context_sds_secret_config or
    combined_validation_context (default_validation_context + an SDS secret)."""
    kind = common.WhichOneof("validation_context_type")
    if kind == "validation_context":
        return translate_validation(common.validation_context,
                                    prefix + "validation_context."), None
    if kind == "validation_context_sds_secret_config":
        found = _secret_ref(common.validation_context_sds_secret_config,
                            prefix + "validation_context_sds_secret_config",
                            "validation_context")
        return (None, found) if isinstance(found, SdsRef) else (found, None)
    if kind == "combined_validation_context":
        combined = common.combined_validation_context
        where = prefix + "combined_validation_context."
        reject_unsupported(combined, {"default_validation_context",
                                      "validation_context_sds_secret_config"}, prefix=where)
        default = translate_validation(combined.default_validation_context,
                                       where + "default_validation_context.")
        found = _secret_ref(combined.validation_context_sds_secret_config,
                            where + "validation_context_sds_secret_config",
                            "validation_context")
        if isinstance(found, SdsRef):
            return default, found
        return ValidationContext(found.trusted_ca or default.trusted_ca,
                                 default.san_matchers + found.san_matchers), None
    return None, None


def _secret_ref(config: Any, field_name: str, kind: str) -> Any:
    """An SdsSecretConfig: with `sds_config`, a secret over SDS (an SdsRef, the TLS context
    waits for it); without, a static secret of the bootstrap (Envoy: configuration/security/
    secret, "static secrets"), returned as its value."""
    reject_unsupported(config, {"name", "sds_config"}, prefix=field_name + ".")
    if not config.name:
        raise ConfigError("a secret name is required", field=field_name + ".name")
    if config.HasField("sds_config"):
        return SdsRef(config.name, translate_sds_source(config.sds_config,
                                                        field_name + ".sds_config"), kind)
    found = static_secret(config.name)
    value = getattr(found, kind, None) if found is not None else None
    if value is None:
        raise ConfigError(f"no static secret {config.name!r} with a {kind}",
                          field=field_name + ".name")
    return value


def _apply_versions(context: ssl.SSLContext, common: Any, default_max: ssl.TLSVersion) -> None:
    # Envoy's defaults: minimum TLSv1_2; maximum TLSv1_3 for servers (common.proto TlsParameters).
    params = common.tls_params
    context.minimum_version = _VERSIONS.get(params.tls_minimum_protocol_version,
                                            ssl.TLSVersion.TLSv1_2)
    context.maximum_version = _VERSIONS.get(params.tls_maximum_protocol_version, default_max)


def _server_context(common: Any, alpn: tuple[str, ...]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_versions(context, common, ssl.TLSVersion.TLSv1_3)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _client_context(common: Any, alpn: tuple[str, ...]) -> ResumingClientContext:
    context = ResumingClientContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _apply_versions(context, common, ssl.TLSVersion.TLSv1_3)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context
