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
"""

from __future__ import annotations

import dataclasses
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
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
    TlsCertificate,
    ValidationContext,
    static_secret,
    translate_certificate,
    translate_validation,
)
from proxy.transport.resumption import ResumingClientContext

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
    certificate: TlsCertificate
    alpn_protocols: tuple[str, ...]
    validation: ValidationContext | None
    require_client_certificate: bool
    ssl_context: ssl.SSLContext = field(compare=False, repr=False)


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


def translate_downstream_tls(message: Message) -> DownstreamTls | None:
    """A listener chain's transport_socket (TransportSocket, Any or the context) -> model."""
    context = _unwrap(message, tls_pb2.DownstreamTlsContext, DOWNSTREAM_TYPE)
    if context is None:
        return None
    reject_unsupported(context, {"common_tls_context", "require_client_certificate"})
    common = context.common_tls_context
    certificate, validation, alpn = _translate_common(common, "common_tls_context.")
    if certificate is None:
        raise ConfigError("a downstream TLS context needs one certificate",
                          field="common_tls_context.tls_certificates")
    require_client = context.HasField("require_client_certificate") and \
        context.require_client_certificate.value
    if require_client and validation is None:
        raise ConfigError("require_client_certificate needs a validation_context",
                          field="require_client_certificate")
    ssl_context = _server_context(common, certificate, validation, alpn, require_client)
    return DownstreamTls(certificate, alpn, validation, require_client, ssl_context)


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
    certificate, validation, alpn = _translate_common(common, "common_tls_context.")
    ssl_context = _client_context(common, certificate, validation, alpn)
    # max_session_keys: sessions kept for resumption (tls.proto: default 1, 0 disables).
    ssl_context.configure_resumption(context.max_session_keys.value
                                     if context.HasField("max_session_keys") else 1)
    return UpstreamTls(context.sni, alpn, certificate, validation, ssl_context)


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


def _translate_common(common: Any, prefix: str
                      ) -> tuple[TlsCertificate | None, ValidationContext | None, tuple[str, ...]]:
    reject_unsupported(common, {"tls_params", "tls_certificates", "validation_context",
                                "alpn_protocols", "tls_certificate_sds_secret_configs",
                                "validation_context_sds_secret_config"}, prefix=prefix)
    if common.HasField("tls_params"):
        reject_unsupported(common.tls_params,
                           {"tls_minimum_protocol_version", "tls_maximum_protocol_version"},
                           prefix=prefix + "tls_params.")
    certificates = [
        translate_certificate(item, f"{prefix}tls_certificates[{index}].")
        for index, item in enumerate(common.tls_certificates)
    ] + [
        _static_secret(item, f"{prefix}tls_certificate_sds_secret_configs[{index}]",
                       "tls_certificate")
        for index, item in enumerate(common.tls_certificate_sds_secret_configs)
    ]
    if len(certificates) > 1:
        raise unsupported(prefix + "tls_certificates[1]", "one certificate per context")
    validation = None
    if common.HasField("validation_context"):
        validation = translate_validation(common.validation_context,
                                           prefix + "validation_context.")
    elif common.HasField("validation_context_sds_secret_config"):
        validation = _static_secret(common.validation_context_sds_secret_config,
                                    prefix + "validation_context_sds_secret_config",
                                    "validation_context")
    return (certificates[0] if certificates else None), validation, \
        tuple(common.alpn_protocols)


def _static_secret(config: Any, field_name: str, kind: str) -> Any:
    """An SdsSecretConfig without sds_config names a static secret of the bootstrap
    (Envoy: configuration/security/secret, "static secrets"). SDS itself is not supported."""
    reject_unsupported(config, {"name"}, prefix=field_name + ".")
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


def _load_certificate(context: ssl.SSLContext, certificate: TlsCertificate,
                      field_name: str) -> None:
    # ssl only loads chains from files: write them to a private directory, load, delete.
    with tempfile.TemporaryDirectory(prefix="pointsman-tls-") as directory:
        chain = Path(directory, "chain.pem")
        key = Path(directory, "key.pem")
        chain.write_bytes(certificate.certificate_chain)
        key.write_bytes(certificate.private_key)
        try:
            context.load_cert_chain(chain, key)
        except ssl.SSLError as error:
            raise ConfigError(f"invalid certificate or key: {error.reason or error}",
                              field=field_name) from error


def _load_ca(context: ssl.SSLContext, validation: ValidationContext, field_name: str) -> None:
    assert validation.trusted_ca is not None
    try:
        context.load_verify_locations(cadata=validation.trusted_ca.decode())
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"invalid trusted_ca: {error}", field=field_name) from error


def _server_context(common: Any, certificate: TlsCertificate,
                    validation: ValidationContext | None, alpn: tuple[str, ...],
                    require_client: bool) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_versions(context, common, ssl.TLSVersion.TLSv1_3)
    _load_certificate(context, certificate, "common_tls_context.tls_certificates[0]")
    if validation is not None and validation.trusted_ca is not None:
        _load_ca(context, validation, "common_tls_context.validation_context.trusted_ca")
        context.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _client_context(common: Any, certificate: TlsCertificate | None,
                    validation: ValidationContext | None,
                    alpn: tuple[str, ...]) -> ResumingClientContext:
    context = ResumingClientContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _apply_versions(context, common, ssl.TLSVersion.TLSv1_3)
    if certificate is not None:
        _load_certificate(context, certificate, "common_tls_context.tls_certificates[0]")
    if validation is not None and validation.trusted_ca is not None:
        _load_ca(context, validation, "common_tls_context.validation_context.trusted_ca")
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context
