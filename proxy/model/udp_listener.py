"""The UDP half of a Listener (`address.socket_address.protocol: UDP`) -> frozen model.

Envoy doc: api/envoy/config/listener/v3/udp_listener_config.proto and
intro/arch_overview/listeners/listeners ("UDP listener filters"). A UDP listener has no
filter chains of its own (Envoy: they are for QUIC only); datagrams go to its UDP listener
filter. Supported:

- `udp_listener_config.downstream_socket_config.max_rx_datagram_size` (default 1500): a larger
  datagram is truncated by the kernel, dropped and counted in
  `listener.<name>.udp.downstream_rx_datagram_dropped`, as Envoy does.
- `listener_filters`: one `envoy.filters.udp_listener.udp_proxy` (proxy.model.udp_proxy), or
  none (Envoy 1.40 accepts that listener: its datagrams reach no filter and are dropped).
- TCP-only fields Envoy accepts on a UDP listener and does not use there (tcp_backlog_size,
  per_connection_buffer_limit_bytes, listener_filters_timeout,
  continue_on_listener_filters_timeout) are accepted and have no effect, as in Envoy.

Refused: `filter_chains` (Envoy: "filter chain(s) specified for connection-less UDP
listener"); by name, `udp_listener_config.quic_options` (QUIC listeners are served by the
HTTP/3 server, not yet in this tree), `udp_packet_packet_writer_config`, `prefer_gro`, a
second UDP listener filter, and any other listener field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from protos.registry import type_name
from proxy.model.fields import reject_unsupported
from proxy.model.udp_proxy import CONFIG_TYPE as UDP_PROXY_TYPE
from proxy.model.udp_proxy import (
    DEFAULT_MAX_RX_DATAGRAM_SIZE,
    UdpProxyConfig,
    translate_socket_config,
    translate_udp_proxy,
)

# Listener fields that mean something for a UDP listener (the rest are TCP-only).
UDP_LISTENER_FIELDS = {
    "name", "address", "stat_prefix", "listener_filters", "udp_listener_config", "metadata",
    "traffic_direction", "enable_reuse_port", "drain_type",
    # Accepted by Envoy on a UDP listener and unused there.
    "tcp_backlog_size", "per_connection_buffer_limit_bytes", "listener_filters_timeout",
    "continue_on_listener_filters_timeout",
}


@dataclass(frozen=True)
class UdpListenerSettings:
    """What a UDP listener adds to the Listener model."""

    max_rx_datagram_size: int = DEFAULT_MAX_RX_DATAGRAM_SIZE
    proxy: UdpProxyConfig | None = None  # the udp_proxy listener filter


def translate_udp_listener(message: Any) -> UdpListenerSettings:
    """The UDP parts of a Listener proto; ConfigError names the field."""
    if message.filter_chains or message.HasField("default_filter_chain"):
        # Envoy 1.40: "N filter chain(s) specified for connection-less UDP listener".
        raise ConfigError("filter chains are for TCP and QUIC listeners, not a "
                          "connection-less UDP listener", field="filter_chains")
    reject_unsupported(message, UDP_LISTENER_FIELDS)
    size = DEFAULT_MAX_RX_DATAGRAM_SIZE
    if message.HasField("udp_listener_config"):
        size = _udp_listener_config(message.udp_listener_config)
    return UdpListenerSettings(max_rx_datagram_size=size,
                               proxy=_udp_proxy_filter(message.listener_filters))


def _udp_listener_config(config: Any) -> int:
    where = "udp_listener_config"
    if config.HasField("quic_options"):
        # The hook for HTTP/3: proxy.listeners.udp dispatches a quic_options listener to a
        # QUIC server once one exists.
        raise unsupported(f"{where}.quic_options", "QUIC listeners are not served yet")
    reject_unsupported(config, {"downstream_socket_config"}, prefix=f"{where}.")
    if not config.HasField("downstream_socket_config"):
        return DEFAULT_MAX_RX_DATAGRAM_SIZE
    return translate_socket_config(config.downstream_socket_config,
                                   f"{where}.downstream_socket_config")


def _udp_proxy_filter(filters: Any) -> UdpProxyConfig | None:
    if not filters:
        return None
    if len(filters) > 1:
        raise unsupported("listener_filters[1]", "one UDP listener filter (udp_proxy)")
    item = filters[0]
    where = "listener_filters[0]"
    reject_unsupported(item, {"name", "typed_config"}, prefix=f"{where}.")
    kind = type_name(item.typed_config.type_url) if item.HasField("typed_config") else ""
    if kind != UDP_PROXY_TYPE:
        raise ConfigError(f"UDP listener filter {kind or item.name!r} is not supported by "
                          "Pointsman (udp_proxy only)", field=f"{where}.typed_config")
    message = unpack_any(item.typed_config, field=f"{where}.typed_config")
    try:
        return translate_udp_proxy(message)
    except ConfigError as error:
        raise error.within(field=f"{where}.typed_config") from error
