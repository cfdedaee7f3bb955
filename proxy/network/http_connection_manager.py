"""`envoy.filters.network.http_connection_manager`: the sidecar's L7 entry point.

Envoy doc: configuration/http/http_conn_man and api/envoy/extensions/filters/network/
http_connection_manager/v3/http_connection_manager.proto. The proto is translated once into
`HcmSettings` (proxy.http.settings); fields we do not implement and that would change
behaviour are refused by name. Routes come inline (`route_config`) or through RDS
(`rds.route_config_name`, read from `ServerContext.routes` on every new stream, so an RDS
update applies to the next request and never to one in flight). A request arriving before
its RDS RouteConfiguration gets 404 (NR), as in Envoy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass, replace
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

import proxy.http.filters  # noqa: F401  (registers the HTTP filters we ship)
from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.context import ServerContext
from proxy.http.active_stream import ActiveStream
from proxy.http.downstream import HttpConnectionHandler
from proxy.http.filter import ROUTER_CONFIG_TYPE, FilterMaker, http_filter_factory
from proxy.http.router import Router
from proxy.http.settings import HcmSettings, HttpFilterConfig
from proxy.model.route import RouteConfig, translate_route_configuration
from proxy.network.base import DownstreamConnection, register
from proxy.upstream.pools import PoolManager

log = logging.getLogger(__name__)

CONFIG_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

_SUPPORTED = {
    "codec_type", "stat_prefix", "rds", "route_config", "http_filters",
    "common_http_protocol_options", "http_protocol_options", "http2_protocol_options",
    "server_name", "server_header_transformation", "max_request_headers_kb",
    "stream_idle_timeout", "request_timeout", "request_headers_timeout",
    "delayed_close_timeout", "access_log", "use_remote_address", "xff_num_trusted_hops",
    "internal_address_config", "skip_xff_append", "generate_request_id",
    "preserve_external_request_id", "upgrade_configs", "tracing",
}


@dataclass(frozen=True)
class HttpConnectionManagerConfig:
    """The translated HCM; `rds_route_config_name` tells the xDS client what to subscribe."""

    settings: HcmSettings

    @property
    def rds_route_config_name(self) -> str | None:
        return self.settings.rds_route_config_name

    @property
    def route_config(self) -> RouteConfig | None:
        return self.settings.route_config

    def for_outbound_listener(self) -> HttpConnectionManagerConfig:
        """This HCM on a listener with traffic_direction OUTBOUND: Envoy's tracing operation
        is then egress (ConnectionManagerTracingConfig; INBOUND and unspecified: ingress)."""
        tracing = self.settings.tracing
        if tracing is None:
            return self
        return replace(self, settings=replace(self.settings, tracing=replace(tracing, egress=True)))


def _seconds(duration: Any) -> float:
    return float(duration.seconds) + duration.nanos / 1e9


def _optional(message: Any, name: str, default: float | None) -> float | None:
    """A Duration field; unset -> default, 0 -> disabled (Envoy's convention)."""
    if not message.HasField(name):
        return default
    value = _seconds(getattr(message, name))
    return value or None


def _reject(message: Message, supported: set[str], prefix: str) -> None:
    for descriptor, _ in message.ListFields():
        if descriptor.name not in supported:
            raise unsupported(f"{prefix}{descriptor.name}")


def translate_http_connection_manager(message: Message) -> HttpConnectionManagerConfig:
    m: Any = message
    _reject(m, _SUPPORTED, "")
    if not m.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    kind = m.WhichOneof("route_specifier")
    rds_name: str | None = None
    route_config: RouteConfig | None = None
    if kind == "rds":
        rds_name = m.rds.route_config_name
        if not rds_name:
            raise ConfigError("route_config_name is required", field="rds.route_config_name")
    elif kind == "route_config":
        try:
            route_config = translate_route_configuration(m.route_config)
        except ConfigError as error:
            raise error.within(field="route_config") from error
    else:
        raise ConfigError("rds or route_config is required", field="route_specifier")
    settings = HcmSettings(
        stat_prefix=m.stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.CodecType.Name(m.codec_type),  # type: ignore
        rds_route_config_name=rds_name,
        route_config=route_config,
        use_remote_address=m.use_remote_address.value,
        xff_num_trusted_hops=m.xff_num_trusted_hops,
        skip_xff_append=m.skip_xff_append,
        generate_request_id=m.generate_request_id.value
        if m.HasField("generate_request_id") else True,
        preserve_external_request_id=m.preserve_external_request_id,
        server_name=m.server_name or "envoy",
        server_header=hcm_pb2.HttpConnectionManager.ServerHeaderTransformation.Name(  # type: ignore
            m.server_header_transformation),
        max_request_headers_kb=m.max_request_headers_kb.value
        if m.HasField("max_request_headers_kb") else 60,
        request_headers_timeout=_optional(m, "request_headers_timeout", None),
        stream_idle_timeout=_optional(m, "stream_idle_timeout", 300.0),
        delayed_close_timeout=_optional(m, "delayed_close_timeout", 1.0),
        request_timeout=_optional(m, "request_timeout", None),
        upgrades=_upgrades(m),
    )
    if settings.codec_type not in ("AUTO", "HTTP1", "HTTP2"):
        raise unsupported("codec_type", settings.codec_type)
    settings = _protocol_options(m, settings)
    settings = _internal_addresses(m, settings)
    settings = _filters(m, settings)
    if m.access_log:
        from proxy.observability.access_log.config import translate_access_logs

        settings = replace(settings, access_logs=translate_access_logs(m.access_log))
    if m.HasField("tracing"):
        from proxy.observability.tracing.config import translate_tracing

        try:
            tracing = translate_tracing(m.tracing)
            if settings.router_start_child_span:
                # The router's start_child_span (deprecated in Envoy in favour of
                # tracing.spawn_upstream_span) asks for the same per-attempt CLIENT spans.
                tracing = replace(tracing, spawn_upstream_span=True)
            settings = replace(settings, tracing=tracing)
        except ConfigError as error:
            raise error.within(field="tracing") from error
    return HttpConnectionManagerConfig(settings)


def _upgrades(m: Any) -> frozenset[str]:
    enabled = set()
    for index, config in enumerate(m.upgrade_configs):
        _reject(config, {"upgrade_type", "enabled"}, f"upgrade_configs[{index}].")
        kind = config.upgrade_type.lower()
        if kind not in ("websocket", "connect"):
            raise unsupported(f"upgrade_configs[{index}].upgrade_type", kind)
        if not config.HasField("enabled") or config.enabled.value:
            enabled.add(kind)
    return frozenset(enabled)


def _protocol_options(m: Any, settings: HcmSettings) -> HcmSettings:
    common = m.common_http_protocol_options
    _reject(common, {"idle_timeout", "max_headers_count"}, "common_http_protocol_options.")
    h1 = m.http_protocol_options
    _reject(h1, {"accept_http_10", "default_host_for_http_10", "allow_absolute_url",
                 "enable_trailers"}, "http_protocol_options.")
    h2 = m.http2_protocol_options
    _reject(h2, {"max_concurrent_streams", "initial_stream_window_size",
                 "initial_connection_window_size", "hpack_table_size", "allow_connect"},
            "http2_protocol_options.")
    return replace(
        settings,
        idle_timeout=_optional(common, "idle_timeout", 3600.0),
        max_headers_count=common.max_headers_count.value
        if common.HasField("max_headers_count") else 100,
        accept_http_10=h1.accept_http_10,
        default_host_for_http_10=h1.default_host_for_http_10,
        allow_absolute_url=h1.allow_absolute_url.value
        if h1.HasField("allow_absolute_url") else True,
        http1_enable_trailers=h1.enable_trailers,
        max_concurrent_streams=h2.max_concurrent_streams.value
        if h2.HasField("max_concurrent_streams") else settings.max_concurrent_streams,
        initial_stream_window_size=min(h2.initial_stream_window_size.value, 2**31 - 1)
        if h2.HasField("initial_stream_window_size") else settings.initial_stream_window_size,
        initial_connection_window_size=min(h2.initial_connection_window_size.value, 2**31 - 1)
        if h2.HasField("initial_connection_window_size")
        else settings.initial_connection_window_size,
        hpack_table_size=h2.hpack_table_size.value if h2.HasField("hpack_table_size") else None,
        allow_connect=h2.allow_connect,
    )


def _internal_addresses(m: Any, settings: HcmSettings) -> HcmSettings:
    if not m.HasField("internal_address_config"):
        return settings
    config = m.internal_address_config
    _reject(config, {"cidr_ranges", "unix_sockets"}, "internal_address_config.")
    networks = []
    for index, cidr in enumerate(config.cidr_ranges):
        try:
            networks.append(ipaddress.ip_network(
                f"{cidr.address_prefix}/{cidr.prefix_len.value}", strict=False))
        except ValueError as error:
            raise ConfigError(str(error),
                              field=f"internal_address_config.cidr_ranges[{index}]") from error
    return replace(settings, internal_networks=tuple(networks))


def _filters(m: Any, settings: HcmSettings) -> HcmSettings:
    """http_filters: ours in order, then Envoy's router, which must come last. None at all is
    accepted as Envoy 1.40 accepts it: there is no router then, and requests stay unanswered
    until the stream idle timeout (proxy.http.active_stream)."""
    if not m.http_filters:
        log.warning("HCM %s has no http_filters: without a router its requests get no "
                    "answer until a timeout (as in Envoy)", settings.stat_prefix)
        return replace(settings, has_router=False)
    configs: list[HttpFilterConfig] = []
    suppress = child_spans = False
    last = len(m.http_filters) - 1
    for index, http_filter in enumerate(m.http_filters):
        where = f"http_filters[{index}]"
        try:
            typed = _http_filter_config(http_filter)
            type_name = typed.DESCRIPTOR.full_name
            if type_name == ROUTER_CONFIG_TYPE:
                if index != last:
                    # Envoy: "terminal filter named X of type Y must be the last filter in a
                    # http filter chain".
                    raise ConfigError(f"the router {http_filter.name!r} must be the last "
                                      "HTTP filter", field="name")
                suppress, child_spans = _router(typed)
                continue
            factory = http_filter_factory(type_name, http_filter.name)
            if index == last:
                # Envoy: "non-terminal filter named X of type Y is the last filter in a http
                # filter chain".
                raise ConfigError(f"HTTP filter {http_filter.name!r} ({type_name}) is the last "
                                  "HTTP filter: the last must be envoy.filters.http.router",
                                  field="name")
            configs.append(HttpFilterConfig(http_filter.name, type_name,
                                            factory.translate(typed)))
        except ConfigError as error:
            raise error.within(field=where) from error
    return replace(settings, http_filters=tuple(configs), suppress_envoy_headers=suppress,
                   router_start_child_span=child_spans)


def _http_filter_config(http_filter: Any) -> Message:
    _reject(http_filter, {"name", "typed_config"}, "")
    if not http_filter.HasField("typed_config"):
        # Envoy 1.40: "Didn't find a registered implementation for 'NAME' with type URL: ''".
        raise ConfigError(f"HTTP filter {http_filter.name!r} needs a typed_config (Envoy finds "
                          "no implementation by name alone)", field="typed_config")
    return unpack_any(http_filter.typed_config)


def _router(typed: Any) -> tuple[bool, bool]:
    """The router's config: (suppress_envoy_headers, start_child_span)."""
    _reject(typed, {"suppress_envoy_headers", "dynamic_stats", "start_child_span"},
            "typed_config.")
    if typed.HasField("dynamic_stats") and not typed.dynamic_stats.value:
        # Envoy then skips per-status cluster stats; we always keep them.
        raise unsupported("typed_config.dynamic_stats", "only true (the default)")
    return bool(typed.suppress_envoy_headers), bool(typed.start_child_span)


def pools_of(context: ServerContext) -> PoolManager:
    """The worker's upstream HTTP pools, shared by every HCM of this ServerContext."""
    if context.http_pools is None:
        context.http_pools = PoolManager()
    pools: PoolManager = context.http_pools
    return pools


class HttpConnectionManager:
    """One per filter chain; serves its downstream connections."""

    def __init__(self, config: HttpConnectionManagerConfig, context: ServerContext) -> None:
        self.config = config
        self.settings = config.settings
        self.context = context
        observability = context.observability
        self.router = Router(context.cluster_manager, pools_of(context),
                             suppress_envoy_headers=self.settings.suppress_envoy_headers,
                             observability=observability)
        self.tracer = observability.tracer(self.settings.tracing) \
            if observability is not None else None
        self.filter_makers: list[FilterMaker] = [
            _create_http_filter(index, f, context, self.settings.stat_prefix)
            for index, f in enumerate(self.settings.http_filters)
        ]
        self.access_logger = _access_logger(self.settings, context)
        self.handlers: set[HttpConnectionHandler] = set()
        self.draining = False
        _validate_inline_clusters(self.settings.route_config, context)
        context.stats.counter(f"http.{self.settings.stat_prefix}.downstream_cx_total")

    def start_draining(self) -> None:
        """proxy.network.base.DrainableNetworkFilter: drain every connection of this chain."""
        self.draining = True
        for handler in list(self.handlers):
            handler.start_draining()

    def route_config(self) -> RouteConfig | None:
        if self.settings.route_config is not None:
            return self.settings.route_config
        assert self.settings.rds_route_config_name is not None
        found = self.context.routes.get(self.settings.rds_route_config_name)
        return found if isinstance(found, RouteConfig) else None

    def _log(self, stream: ActiveStream) -> None:
        observability = self.context.observability
        span = stream.info.state.get("span")
        metrics = observability is not None and observability.metrics is not None
        if not metrics and not self.access_logger:
            if span is not None:
                stream.finish_span(span)  # the span alone: no request record unless needed
            return
        info = stream.request_info()
        if span is not None:
            span.finish(info)
        if observability is not None:
            observability.request_finished(info, self.access_logger)
        elif self.access_logger:
            self.access_logger.log(info)

    async def on_new_connection(self, connection: DownstreamConnection) -> None:
        loop = asyncio.get_running_loop()
        stats = self.context.stats
        prefix = f"http.{self.settings.stat_prefix}."
        stats.counter(prefix + "downstream_cx_total").inc()
        stats.gauge(prefix + "downstream_cx_active").inc()
        handler = HttpConnectionHandler(
            settings=self.settings, route_config=self.route_config,
            filter_makers=self.filter_makers, router=self.router, tracer=self.tracer,
            remote_address=connection.remote_address, local_address=connection.local_address,
            connection_id=connection.connection_id, tls=connection.server_ssl is not None,
            stats=stats, on_stream_log=self._log,
            buffer_limit=getattr(connection, "buffer_limit", 1024 * 1024))
        transport: asyncio.BaseTransport | None = None
        try:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport, _ = await loop.connect_accepted_socket(
                lambda: handler, connection.sock, ssl=connection.server_ssl)
            self.handlers.add(handler)
            if self.draining:
                handler.start_draining()
            await handler.closed
        except (OSError, ConnectionError) as error:
            log.debug("downstream connection %s failed: %s", connection.connection_id, error)
        finally:
            self.handlers.discard(handler)
            stats.gauge(prefix + "downstream_cx_active").dec()
            if transport is not None:
                handler.shutdown()
                if handler.tasks:
                    await asyncio.gather(*handler.tasks, return_exceptions=True)
            connection.sock.close()


def _create_http_filter(index: int, config: HttpFilterConfig, context: ServerContext,
                        stat_prefix: str) -> FilterMaker:
    """A filter factory's create() may refuse its config too: name the filter in the error
    (http_filters keeps the router last, so `index` is the filter's place in the proto)."""
    try:
        return http_filter_factory(config.config_type).create(config.config, context,
                                                               stat_prefix=stat_prefix,
                                                               name=config.name)
    except ConfigError as error:
        raise error.within(field=f"http_filters[{index}].typed_config") from error


def _validate_inline_clusters(routes: RouteConfig | None, context: ServerContext) -> None:
    """Envoy refuses an inline route config naming an unknown cluster (validate_clusters
    defaults to true for it) with "route: unknown cluster"."""
    manager = context.cluster_manager
    if routes is None or routes.validate_clusters is False or manager is None:
        return
    try:
        routes.refuse_unknown_clusters(lambda name: manager.get(name) is not None)
    except ConfigError as error:
        raise error.within(field="route_config") from error


def _access_logger(settings: HcmSettings, context: ServerContext) -> Any:
    if not settings.access_logs:
        return None
    if context.observability is not None:
        return context.observability.access_logger(settings.access_logs)
    # Without the server's Observability (unit harnesses) the sinks are ours; their writer
    # threads are daemons that end with the process.
    from proxy.observability.access_log.sinks import AccessLogger, build_sink

    return AccessLogger([build_sink(config, stats=context.stats, node_id=context.node.id,
                                    cluster=context.node.cluster)
                         for config in settings.access_logs])


class HttpConnectionManagerFactory:
    config_type = CONFIG_TYPE

    def translate(self, message: Message) -> HttpConnectionManagerConfig:
        return translate_http_connection_manager(message)

    def create(self, config: Any, context: ServerContext) -> HttpConnectionManager:
        return HttpConnectionManager(config, context)


register(HttpConnectionManagerFactory())
