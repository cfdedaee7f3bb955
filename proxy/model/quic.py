"""QUIC listener config -> frozen model: `udp_listener_config.quic_options` and the
`envoy.transport_sockets.quic` downstream transport socket.

Envoy's HTTP/3 downstream (docs intro/arch_overview/http/http3): a UDP listener with
`udp_listener_config.quic_options`, filter chains whose transport socket is a
`QuicDownstreamTransport` wrapping a `DownstreamTlsContext`, and the HTTP connection manager
with `codec_type: HTTP3`. Defaults are the protos' (api/envoy/config/listener/v3/quic_config.proto,
api/envoy/config/core/v3/protocol.proto QuicProtocolOptions). What we do not implement and would
change behaviour is refused by field path; the runtime is proxy.listeners.quic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.quic.v3 import quic_transport_pb2
from google.protobuf import any_pb2

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.model.fields import reject_unsupported, seconds
from proxy.model.tls import (
    DownstreamTls,
    UpstreamTls,
    translate_downstream_tls,
    translate_upstream_tls,
)

QUIC_TRANSPORT_NAME = "envoy.transport_sockets.quic"
QUIC_DOWNSTREAM_TYPE = "envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport"
QUIC_UPSTREAM_TYPE = "envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport"

# quic_config.proto: idle_timeout "if less than 1 ms, 300 s"; crypto_handshake_timeout 20 s.
DEFAULT_IDLE_TIMEOUT = 300.0
DEFAULT_HANDSHAKE_TIMEOUT = 20.0
# protocol.proto QuicProtocolOptions: max_concurrent_streams 100; windows 16 MiB / 24 MiB
# (initial_stream_window_size is at most 16 MiB, initial_connection_window_size 25 MiB).
DEFAULT_MAX_CONCURRENT_STREAMS = 100
DEFAULT_STREAM_WINDOW = 16 * 1024 * 1024
DEFAULT_CONNECTION_WINDOW = 24 * 1024 * 1024
# Ours, not Envoy's (Envoy bounds QUIC sessions through the overload manager and
# max_connections_to_accept_per_socket_event): connections one QUIC listener keeps at once.
DEFAULT_MAX_CONNECTIONS = 10_000

_QUIC_OPTIONS = {"quic_protocol_options", "idle_timeout", "crypto_handshake_timeout", "enabled",
                 "reject_new_connections", "send_disable_active_migration"}
_PROTOCOL_OPTIONS = {"max_concurrent_streams", "initial_stream_window_size",
                     "initial_connection_window_size", "idle_network_timeout"}


@dataclass(frozen=True)
class QuicListenerOptions:
    """A QUIC listener's transport settings (udp_listener_config.quic_options)."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_concurrent_streams: int = DEFAULT_MAX_CONCURRENT_STREAMS
    initial_stream_window_size: int = DEFAULT_STREAM_WINDOW
    initial_connection_window_size: int = DEFAULT_CONNECTION_WINDOW
    reject_new_connections: bool = False
    max_connections: int = DEFAULT_MAX_CONNECTIONS


def translate_udp_listener_config(config: Any) -> QuicListenerOptions | None:
    """`Listener.udp_listener_config` -> QUIC options; None when it has no quic_options (a
    plain UDP listener, which this module does not serve)."""
    reject_unsupported(config, {"quic_options"}, prefix="udp_listener_config.")
    if not config.HasField("quic_options"):
        return None
    try:
        return _quic_options(config.quic_options)
    except ConfigError as error:
        raise error.within(field="udp_listener_config.quic_options") from error


def _quic_options(options: Any) -> QuicListenerOptions:
    reject_unsupported(options, _QUIC_OPTIONS)
    if options.HasField("enabled") and not options.enabled.default_value.value:
        # A disabled QUIC listener is Envoy's way to stop taking HTTP/3 at run time.
        raise unsupported("enabled", "a QUIC listener that is turned off")
    core = options.quic_protocol_options
    reject_unsupported(core, _PROTOCOL_OPTIONS, prefix="quic_protocol_options.")
    idle = seconds(options.idle_timeout) if options.HasField("idle_timeout") else 0.0
    if core.HasField("idle_network_timeout"):
        idle = seconds(core.idle_network_timeout)  # protocol.proto: overrides idle_timeout
    handshake = seconds(options.crypto_handshake_timeout) \
        if options.HasField("crypto_handshake_timeout") else 0.0
    return QuicListenerOptions(
        idle_timeout=idle if idle >= 0.001 else DEFAULT_IDLE_TIMEOUT,
        handshake_timeout=handshake if handshake > 0 else DEFAULT_HANDSHAKE_TIMEOUT,
        max_concurrent_streams=_value(core, "max_concurrent_streams",
                                      DEFAULT_MAX_CONCURRENT_STREAMS),
        initial_stream_window_size=_value(core, "initial_stream_window_size",
                                          DEFAULT_STREAM_WINDOW),
        initial_connection_window_size=_value(core, "initial_connection_window_size",
                                              DEFAULT_CONNECTION_WINDOW),
        reject_new_connections=options.reject_new_connections,
    )


def _value(message: Any, name: str, default: int) -> int:
    if not message.HasField(name):
        return default
    value = int(getattr(message, name).value)
    if value < 1:
        raise ConfigError(f"{name} must be at least 1", field=f"quic_protocol_options.{name}")
    return value


def translate_quic_transport(socket: Any) -> DownstreamTls:
    """A QUIC chain's transport_socket: `envoy.transport_sockets.quic`, its
    QuicDownstreamTransport's `downstream_tls_context` translated by proxy.model.tls (one
    certificate, no client certificates: aioquic's server does not ask for them)."""
    transport = _unwrap(socket)
    reject_unsupported(transport, {"downstream_tls_context"}, prefix="typed_config.")
    if not transport.HasField("downstream_tls_context"):
        raise ConfigError("a QUIC transport needs a downstream_tls_context",
                          field="typed_config.downstream_tls_context")
    try:
        tls = translate_downstream_tls(transport.downstream_tls_context)
    except ConfigError as error:
        raise error.within(field="typed_config.downstream_tls_context") from error
    assert tls is not None
    if tls.certificate is None or tls.sds:
        # Secrets from an SDS server (rotated at run time) would need the QUIC configuration
        # rebuilt per rotation; static ones only for now.
        name = "tls_certificate_sds_secret_configs" if tls.certificate is None \
            else "validation_context_sds_secret_config"
        raise unsupported(f"typed_config.downstream_tls_context.common_tls_context.{name}",
                          "SDS secrets over QUIC")
    if tls.validation is not None:
        raise unsupported("typed_config.downstream_tls_context.common_tls_context."
                          "validation_context", "client certificates over QUIC")
    return tls


def _unwrap(socket: Any) -> Any:
    if isinstance(socket, base_pb2.TransportSocket):
        if not socket.HasField("typed_config"):
            raise ConfigError("a QUIC listener's chains need the envoy.transport_sockets.quic "
                              "transport socket", field="typed_config")
        socket = socket.typed_config
    if isinstance(socket, any_pb2.Any):
        if not socket.type_url.endswith("/" + QUIC_DOWNSTREAM_TYPE):
            raise ConfigError(f"a QUIC listener's chains take {QUIC_DOWNSTREAM_TYPE}, not "
                              f"{socket.type_url.rsplit('/', 1)[-1]}", field="typed_config")
        socket = unpack_any(socket)
    if not isinstance(socket, quic_transport_pb2.QuicDownstreamTransport):
        raise ConfigError(f"expected {QUIC_DOWNSTREAM_TYPE}", field="typed_config")
    return socket


def is_quic_upstream(socket: Any) -> bool:
    """Whether a cluster's transport_socket is `envoy.transport_sockets.quic` (by its typed
    config's type, as Envoy resolves transport sockets; the name alone is only a label)."""
    packed = socket.typed_config if isinstance(socket, base_pb2.TransportSocket) else socket
    if isinstance(packed, any_pb2.Any):
        return packed.type_url.endswith("/" + QUIC_UPSTREAM_TYPE)
    return isinstance(packed, quic_transport_pb2.QuicUpstreamTransport)


# What the upstream QUIC client (aioquic, proxy.upstream.pools.http3) does with the wrapped
# UpstreamTlsContext: `sni` and common_tls_context.validation_context.trusted_ca. The rest
# would change behaviour and is refused by path.
_QUIC_UPSTREAM_TLS = {"common_tls_context", "sni"}
_QUIC_UPSTREAM_COMMON = {"validation_context", "alpn_protocols"}


def translate_quic_upstream_transport(socket: Any) -> UpstreamTls:
    """A cluster's `envoy.transport_sockets.quic` transport socket: a QuicUpstreamTransport
    wrapping an UpstreamTlsContext (Envoy docs intro/arch_overview/http/http3, "upstream
    HTTP/3"; configs/google_com_http3_upstream_proxy.yaml). QUIC always speaks TLS 1.3 with
    ALPN h3 (RFC 9114 3.1)."""
    packed = socket.typed_config if isinstance(socket, base_pb2.TransportSocket) else socket
    transport: Any = unpack_any(packed) if isinstance(packed, any_pb2.Any) else packed
    where = "typed_config.upstream_tls_context."
    reject_unsupported(transport, {"upstream_tls_context"}, prefix="typed_config.")
    context = transport.upstream_tls_context
    reject_unsupported(context, _QUIC_UPSTREAM_TLS, prefix=where)
    common = context.common_tls_context
    reject_unsupported(common, _QUIC_UPSTREAM_COMMON, prefix=where + "common_tls_context.")
    if any(protocol != "h3" for protocol in common.alpn_protocols):
        raise unsupported(where + "common_tls_context.alpn_protocols",
                          "ALPN other than h3 over QUIC")
    validation = common.validation_context
    reject_unsupported(validation, {"trusted_ca"},
                       prefix=where + "common_tls_context.validation_context.")
    try:
        tls = translate_upstream_tls(context)
    except ConfigError as error:
        raise error.within(field="typed_config.upstream_tls_context") from error
    assert tls is not None
    return dataclasses.replace(tls, alpn_protocols=("h3",), quic=True)


HCM_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"


def check_quic_listener(message: Any, quic: QuicListenerOptions | None,
                        chains: tuple[Any, ...]) -> None:
    """What a QUIC listener's chains must be, and that no TCP listener speaks HTTP/3. Envoy
    refuses an HTTP/3 codec on a TCP listener ("HTTP/3 codec configured on non-QUIC listener")
    and a QUIC chain without the QUIC transport socket or whose filter is not the HCM."""
    for index, chain in enumerate(chains):
        where = f"filter_chains[{index}]" if index < len(message.filter_chains) \
            else "default_filter_chain"
        http3 = chain.filter.config_type == HCM_TYPE \
            and chain.filter.config.settings.codec_type == "HTTP3"
        if quic is None:
            if http3:
                raise ConfigError("HTTP/3 codec configured on non-QUIC listener",
                                  field=f"{where}.filters[0].typed_config.codec_type")
            continue
        _check_quic_chain(chain, where, http3)
    if quic is not None and message.listener_filters:
        raise unsupported("listener_filters", "listener filters on a QUIC listener")


def _check_quic_chain(chain: Any, where: str, http3: bool) -> None:
    if chain.tls is None:
        raise ConfigError("a QUIC listener's chains need the envoy.transport_sockets.quic "
                          "transport socket", field=f"{where}.transport_socket")
    if not http3:
        raise ConfigError("a QUIC listener's chain takes the http_connection_manager with "
                          "codec_type HTTP3", field=f"{where}.filters")
    if chain.read_filters:
        raise unsupported(f"{where}.filters[0]", "network filters before the HCM of a QUIC "
                          "listener")
    if chain.filter.config.settings.request_headers_timeout is not None:
        raise unsupported(f"{where}.filters[0].typed_config.request_headers_timeout",
                          "on HTTP/3")
    match = chain.match
    # prefix_ranges and source_type (same IP) need a datagram's destination address, which
    # takes IP_PKTINFO the UDP socket does not ask for; the bound (maybe wildcard) address
    # instead would match wrongly.
    for name in ("server_names", "transport_protocol", "application_protocols",
                 "prefix_ranges", "source_type"):
        if getattr(match, name):
            raise unsupported(f"{where}.filter_chain_match.{name}", "on a QUIC listener")
