"""Listener proto -> frozen model: address, listener filters, filter chains with their match.

Translated once (LDS or the bootstrap); the data path never reads protobuf. Each chain's single
network filter is translated by its registered factory (proxy.network.base.NETWORK_FILTERS; a
chain without filters closes its connections, as Envoy: proxy.network.no_filters) and
its downstream TLS context by proxy.model.tls. Unsupported fields that would change
behaviour are refused by name.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from typing import Any

from envoy.config.core.v3 import base_pb2 as core_base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.proxy_protocol.v3 import proxy_protocol_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from protos.registry import type_name
from proxy.model.extensions import network_filter_translator, read_filter_translator
from proxy.model.fields import enum_name, reject_unsupported, seconds
from proxy.model.quic import (
    QuicListenerOptions,
    check_quic_listener,
    translate_quic_transport,
    translate_udp_listener_config,
)
from proxy.model.tls import DownstreamTls, translate_downstream_tls
from proxy.model.udp_listener import UdpListenerSettings, translate_udp_listener

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TLS_INSPECTOR = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
PROXY_PROTOCOL = "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol"

# FilterChainMatch.ConnectionSourceType
SOURCE_ANY = 0
SOURCE_SAME_IP_OR_LOOPBACK = 1
SOURCE_EXTERNAL = 2

_UDP = 1  # SocketAddress.Protocol.UDP

# Envoy's default listener_filters_timeout (listener.proto): 15 s.
DEFAULT_LISTENER_FILTERS_TIMEOUT = 15.0

_LISTENER_FIELDS = {
    "name", "address", "stat_prefix", "filter_chains", "default_filter_chain", "listener_filters",
    "listener_filters_timeout", "continue_on_listener_filters_timeout", "metadata",
    "traffic_direction", "per_connection_buffer_limit_bytes", "enable_reuse_port",
    "tcp_backlog_size", "drain_type", "udp_listener_config",
}
_MATCH_FIELDS = {
    "destination_port", "prefix_ranges", "source_type", "source_prefix_ranges", "source_ports",
    "server_names", "transport_protocol", "application_protocols",
}


@dataclass(frozen=True)
class FilterChainMatch:
    destination_port: int | None = None
    prefix_ranges: tuple[Network, ...] = ()
    server_names: tuple[str, ...] = ()
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = ()
    source_type: int = SOURCE_ANY
    source_prefix_ranges: tuple[Network, ...] = ()
    source_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class NetworkFilterConfig:
    """A chain's terminal network filter: its typed_config type (empty for a chain without
    filters, whose connections close at once) and its config, translated by the filter's
    translator (proxy.model.extensions); the listener manager creates the filter."""

    name: str
    config_type: str
    config: Any


@dataclass(frozen=True)
class FilterChain:
    name: str
    match: FilterChainMatch
    filter: NetworkFilterConfig  # the chain's terminal network filter
    tls: DownstreamTls | None = None
    # The non-terminal filters before it (Envoy's read filters, e.g. network rbac), in order.
    read_filters: tuple[NetworkFilterConfig, ...] = ()


@dataclass(frozen=True)
class ListenerFilter:
    name: str
    kind: str  # TLS_INSPECTOR or PROXY_PROTOCOL
    allow_requests_without_proxy_protocol: bool = False
    max_client_hello_size: int = 16 * 1024  # tls_inspector.proto default


@dataclass(frozen=True)
class Listener:
    name: str
    address: tuple[str, int]
    stat_prefix: str
    filter_chains: tuple[FilterChain, ...]
    default_filter_chain: FilterChain | None = None
    listener_filters: tuple[ListenerFilter, ...] = ()
    listener_filters_timeout: float | None = DEFAULT_LISTENER_FILTERS_TIMEOUT
    continue_on_listener_filters_timeout: bool = False
    backlog: int = 1024
    rds_route_config_names: tuple[str, ...] = ()
    # Envoy's soft limit on a downstream connection's buffers (default 1 MiB).
    per_connection_buffer_limit_bytes: int = 1024 * 1024
    enable_reuse_port: bool = True  # Envoy's default since 1.20: SO_REUSEPORT
    # A QUIC (HTTP/3) listener on UDP: udp_listener_config.quic_options (proxy.model.quic).
    quic: QuicListenerOptions | None = None
    # A UDP listener (address.socket_address.protocol: UDP): its datagram settings and its
    # udp_proxy (proxy.model.udp_listener); None for TCP.
    udp: UdpListenerSettings | None = None

    @property
    def is_udp(self) -> bool:
        return self.udp is not None

    @property
    def uses_tls_inspector(self) -> bool:
        return any(f.kind == TLS_INSPECTOR for f in self.listener_filters)

    @property
    def stats_name(self) -> str:
        """Envoy's listener stat scope: `listener.<stat_prefix or ADDRESS_PORT>.`."""
        return self.stat_prefix or f"{self.address[0]}_{self.address[1]}"


def translate_listener(message: listener_pb2.Listener, *, name: str = "") -> Listener:
    """Listener proto -> model, raising ConfigError naming the field and the listener.

    `name` names a listener whose `name` is empty: a static listener, which Envoy names
    itself with a random UUID (ListenerManagerImpl::addOrUpdateListener); proxy.bootstrap
    passes one. An LDS listener is keyed by its resource name and needs one."""
    try:
        return _translate(message, message.name or name)
    except ConfigError as error:
        raise error.within(resource=message.name) from error


def _translate(message: listener_pb2.Listener, name: str) -> Listener:
    if not name:
        raise ConfigError("a listener needs a name", field="name")
    if _is_udp(message) and not _has_quic_options(message):
        return _translate_udp(message, name)
    reject_unsupported(message, _LISTENER_FIELDS)
    quic = translate_udp_listener_config(message.udp_listener_config) \
        if message.HasField("udp_listener_config") else None
    if quic is not None and message.listener_filters and not message.filter_chains:
        raise ConfigError("quic_options make a QUIC listener, whose filter chains serve HTTP/3; "
                          "a UDP listener filter (udp_proxy) needs a listener without them",
                          field="udp_listener_config.quic_options")
    address = translate_socket_address(message.address, "address", udp=quic is not None)
    chains = tuple(
        _translate_chain(chain, f"filter_chains[{index}]", index, quic=quic is not None)
        for index, chain in enumerate(message.filter_chains)
    )
    default = None
    if message.HasField("default_filter_chain"):
        default = _translate_chain(message.default_filter_chain, "default_filter_chain", -1,
                                   quic=quic is not None)
    if not chains and default is None:
        raise ConfigError("a listener needs filter_chains or a default_filter_chain",
                          field="filter_chains")
    _check_distinct_matches(chains)
    check_quic_listener(message, quic, (*chains, *([default] if default else [])))
    if message.traffic_direction == core_base_pb2.TrafficDirection.OUTBOUND:
        chains = tuple(_outbound(chain) for chain in chains)
        default = _outbound(default) if default is not None else None
    timeout: float | None = DEFAULT_LISTENER_FILTERS_TIMEOUT
    if message.HasField("listener_filters_timeout"):
        value = seconds(message.listener_filters_timeout)
        timeout = value if value > 0 else None  # 0 disables the timeout
    every_chain = (*chains, *([default] if default else []))
    return Listener(
        name=name,
        address=address,
        stat_prefix=message.stat_prefix,
        filter_chains=chains,
        default_filter_chain=default,
        listener_filters=tuple(
            _translate_listener_filter(item, f"listener_filters[{index}]")
            for index, item in enumerate(message.listener_filters)
        ),
        listener_filters_timeout=timeout,
        continue_on_listener_filters_timeout=message.continue_on_listener_filters_timeout,
        backlog=message.tcp_backlog_size.value if message.HasField("tcp_backlog_size") else 1024,
        per_connection_buffer_limit_bytes=(
            message.per_connection_buffer_limit_bytes.value
            if message.HasField("per_connection_buffer_limit_bytes") else 1024 * 1024),
        enable_reuse_port=(message.enable_reuse_port.value
                           if message.HasField("enable_reuse_port") else True),
        quic=quic,
        rds_route_config_names=tuple(
            rds for chain in every_chain
            if (rds := getattr(chain.filter.config, "rds_route_config_name", None))
        ),
    )


def _is_udp(message: listener_pb2.Listener) -> bool:
    return (message.address.WhichOneof("address") == "socket_address"
            and message.address.socket_address.protocol == _UDP)


def _has_quic_options(message: listener_pb2.Listener) -> bool:
    """A UDP listener with udp_listener_config.quic_options is a QUIC (HTTP/3) listener, with
    filter chains as a TCP one has (proxy.model.quic); any other UDP listener is
    connection-less (proxy.model.udp_listener)."""
    return message.udp_listener_config.HasField("quic_options")


def _translate_udp(message: listener_pb2.Listener, name: str) -> Listener:
    """A UDP listener: no filter chains, its datagrams go to its UDP listener filter."""
    settings = translate_udp_listener(message)
    return Listener(
        name=name,
        address=translate_socket_address(message.address, "address", udp=True),
        stat_prefix=message.stat_prefix,
        filter_chains=(),
        enable_reuse_port=(message.enable_reuse_port.value
                           if message.HasField("enable_reuse_port") else True),
        udp=settings,
    )


def translate_socket_address(address: Any, field_name: str, *,
                             udp: bool = False) -> tuple[str, int]:
    if address.WhichOneof("address") != "socket_address":
        raise unsupported(f"{field_name}.{address.WhichOneof('address') or 'socket_address'}",
                          "only socket_address listeners")
    socket_address = address.socket_address
    reject_unsupported(socket_address, {"address", "port_value", "protocol"},
                       prefix=f"{field_name}.socket_address.")
    if socket_address.protocol != (_UDP if udp else 0):
        raise unsupported(f"{field_name}.socket_address.protocol",
                          f"{enum_name(socket_address, 'protocol')}: TCP or UDP only")
    try:
        ipaddress.ip_address(socket_address.address)
    except ValueError:
        raise ConfigError(f"{socket_address.address!r} is not an IP address",
                          field=f"{field_name}.socket_address.address") from None
    return socket_address.address, socket_address.port_value


def _translate_chain(chain: Any, field_name: str, index: int, *, quic: bool = False
                     ) -> FilterChain:
    try:
        reject_unsupported(chain, {"filter_chain_match", "filters", "transport_socket", "name",
                                   "metadata"})
        read_filters, network_filter = _chain_filters(chain.filters)
        tls = None
        if chain.HasField("transport_socket"):
            try:
                tls = translate_quic_transport(chain.transport_socket) if quic \
                    else translate_downstream_tls(chain.transport_socket)
            except ConfigError as error:
                raise error.within(field="transport_socket") from error
        return FilterChain(
            name=chain.name or f"chain{index}",
            match=translate_match(chain.filter_chain_match),
            filter=network_filter,
            tls=tls,
            read_filters=read_filters,
        )
    except ConfigError as error:
        raise error.within(field=field_name) from error


def _outbound(chain: FilterChain) -> FilterChain:
    """The chain of an OUTBOUND listener: its terminal filter learns the direction (the HCM
    names its spans `egress <host>`, as Envoy), when it cares (`for_outbound_listener`)."""
    hook = getattr(chain.filter.config, "for_outbound_listener", None)
    if hook is None:
        return chain
    return replace(chain, filter=replace(chain.filter, config=hook()))


def _chain_filters(filters: Any) -> tuple[tuple[NetworkFilterConfig, ...], NetworkFilterConfig]:
    """The chain's read filters (registered in proxy.model.extensions by proxy.network: rbac)
    and its one terminal network filter (tcp_proxy or the HCM), which must come last, as
    Envoy requires. No filters: Envoy accepts the chain and closes its connections at once
    (proxy.network.no_filters). Any other filter is refused by its own name."""
    if not filters:
        return (), NetworkFilterConfig("", "", None)
    last = len(filters) - 1
    read_filters = []
    for index, item in enumerate(filters[:last]):
        where = f"filters[{index}]"
        _require_typed_config(item, where)
        kind = type_name(item.typed_config.type_url)
        if read_filter_translator(kind) is not None:
            read_filters.append(_translate_filter(item, where, read_filter_translator(kind)))
            continue
        if network_filter_translator(kind) is not None:
            # Envoy: "terminal filter named X of type Y must be the last filter in a network
            # filter chain".
            raise ConfigError(f"terminal network filter {_describe(item)} must be the last "
                              "filter of its chain", field=f"{where}.name")
        raise ConfigError(f"network filter {_describe(item)} is not supported by Pointsman "
                          "(supported: rbac, then one terminal filter: tcp_proxy or "
                          "http_connection_manager)", field=f"{where}.typed_config")
    where = f"filters[{last}]"
    _require_typed_config(filters[last], where)
    if read_filter_translator(type_name(filters[last].typed_config.type_url)) is not None:
        # Envoy: "non-terminal filter named X of type Y is the last filter in a network
        # filter chain."
        raise ConfigError(f"non-terminal filter {_describe(filters[last])} is the last filter "
                          "of its chain (a chain ends with tcp_proxy or "
                          "http_connection_manager)", field=f"{where}.name")
    return tuple(read_filters), _translate_network_filter(filters[last], where)


def _describe(item: Any) -> str:
    """A filter as Envoy names it in errors: its `name` and its typed_config type."""
    kind = type_name(item.typed_config.type_url) if item.HasField("typed_config") else ""
    if item.name and kind:
        return f"{item.name!r} ({kind})"
    return repr(item.name or kind)


def _require_typed_config(item: Any, field_name: str) -> None:
    reject_unsupported(item, {"name", "typed_config"}, prefix=f"{field_name}.")
    if not item.HasField("typed_config"):
        # Envoy 1.40: "Didn't find a registered implementation for 'NAME' with type URL: ''".
        raise ConfigError(f"network filter {item.name!r} needs a typed_config (Envoy finds no "
                          "implementation by name alone)", field=f"{field_name}.typed_config")


def _translate_network_filter(item: Any, field_name: str) -> NetworkFilterConfig:
    _require_typed_config(item, field_name)
    translate = network_filter_translator(type_name(item.typed_config.type_url))
    return _translate_filter(item, field_name, translate)


def _translate_filter(item: Any, field_name: str, translate: Any) -> NetworkFilterConfig:
    config_type = type_name(item.typed_config.type_url)
    try:
        if translate is None:
            described = f"{item.name!r} ({config_type})" if item.name else repr(config_type)
            raise ConfigError(f"network filter {described} is not supported by Pointsman")
        config = translate(unpack_any(item.typed_config))
    except ConfigError as error:
        raise error.within(field=f"{field_name}.typed_config") from error
    return NetworkFilterConfig(item.name, config_type, config)


def translate_match(match: listener_components_pb2.FilterChainMatch) -> FilterChainMatch:
    reject_unsupported(match, _MATCH_FIELDS, prefix="filter_chain_match.")
    for index, name in enumerate(match.server_names):
        if "*" in name and not (name.startswith("*.") and "*" not in name[1:]):
            raise ConfigError("only a leading '*.' wildcard is allowed",
                              field=f"filter_chain_match.server_names[{index}]")
    return FilterChainMatch(
        destination_port=(match.destination_port.value
                          if match.HasField("destination_port") else None),
        prefix_ranges=_cidrs(match.prefix_ranges, "filter_chain_match.prefix_ranges"),
        server_names=tuple(name.lower() for name in match.server_names),
        transport_protocol=match.transport_protocol,
        application_protocols=tuple(match.application_protocols),
        source_type=int(match.source_type),
        source_prefix_ranges=_cidrs(match.source_prefix_ranges,
                                    "filter_chain_match.source_prefix_ranges"),
        source_ports=tuple(match.source_ports),
    )


def _cidrs(ranges: Any, field_name: str) -> tuple[Network, ...]:
    result = []
    for index, cidr in enumerate(ranges):
        prefix_len = cidr.prefix_len.value if cidr.HasField("prefix_len") else None
        try:
            address = ipaddress.ip_address(cidr.address_prefix)
            length = address.max_prefixlen if prefix_len is None else prefix_len
            result.append(ipaddress.ip_network(f"{address}/{length}", strict=False))
        except ValueError as error:
            raise ConfigError(str(error), field=f"{field_name}[{index}]") from error
    return tuple(result)


def _check_distinct_matches(chains: tuple[FilterChain, ...]) -> None:
    """Envoy rejects a listener whose chains have identical matches ('multiple filter chains
    with the same matching rules are defined')."""
    seen: dict[FilterChainMatch, int] = {}
    for index, chain in enumerate(chains):
        if chain.match in seen:
            raise ConfigError(
                f"filter chain has the same match as filter_chains[{seen[chain.match]}]",
                field=f"filter_chains[{index}].filter_chain_match")
        seen[chain.match] = index


def _translate_listener_filter(item: Any, field_name: str) -> ListenerFilter:
    reject_unsupported(item, {"name", "typed_config"}, prefix=f"{field_name}.")
    kind = type_name(item.typed_config.type_url) if item.HasField("typed_config") else ""
    if kind == TLS_INSPECTOR:
        inspector = unpack_any(item.typed_config, field=f"{field_name}.typed_config")
        assert isinstance(inspector, tls_inspector_pb2.TlsInspector)
        # initial_read_buffer_size only tunes how much is peeked first: no behaviour change.
        reject_unsupported(inspector, {"initial_read_buffer_size", "max_client_hello_size"},
                           prefix=f"{field_name}.typed_config.")
        size = (inspector.max_client_hello_size.value
                if inspector.HasField("max_client_hello_size") else 16 * 1024)
        return ListenerFilter(item.name, kind, max_client_hello_size=size)
    if kind == PROXY_PROTOCOL:
        config = unpack_any(item.typed_config, field=f"{field_name}.typed_config")
        assert isinstance(config, proxy_protocol_pb2.ProxyProtocol)
        reject_unsupported(config, {"allow_requests_without_proxy_protocol", "stat_prefix"},
                           prefix=f"{field_name}.typed_config.")
        return ListenerFilter(item.name, kind, config.allow_requests_without_proxy_protocol)
    raise ConfigError(f"listener filter {kind or item.name!r} is not supported by Pointsman",
                      field=f"{field_name}.typed_config")
