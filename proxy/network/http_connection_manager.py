"""`envoy.filters.network.http_connection_manager`: the sidecar's L7 entry point, at run time.

The proto is translated once into `HcmSettings` by proxy.network.hcm_config. Routes come
inline (`route_config`) or through RDS (`rds.route_config_name`, read from
`ServerContext.routes` on every new stream, so an RDS update applies to the next request and
never to one in flight). A request arriving before its RDS RouteConfiguration gets 404 (NR),
as in Envoy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.context import ServerContext
from proxy.http.active_stream import ActiveStream
from proxy.http.downstream import HttpConnectionHandler
from proxy.http.filter import FilterMaker, http_filter_factory
from proxy.http.http3_server import Http3ServerConnection, QuicLink
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.router import Router
from proxy.http.settings import HcmSettings, HttpFilterConfig
from proxy.model.route import RouteConfig
from proxy.network.base import DownstreamConnection, register
from proxy.network.hcm_config import (
    CONFIG_TYPE,
    HttpConnectionManagerConfig,
    translate_http_connection_manager,
)
from proxy.network.read_filters import protocol_for
from proxy.upstream.pools import PoolManager

log = logging.getLogger(__name__)

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
        self.tracer = observability.tracer(self.settings.tracing, egress=config.outbound) \
            if observability is not None else None
        self.filter_makers: list[FilterMaker] = [
            _create_http_filter(index, f, context, self.settings.stat_prefix)
            for index, f in enumerate(self.settings.http_filters)
        ]
        self.access_logger = _access_logger(self.settings, context)
        self.manager = HttpManager(self.settings, self.route_config, self.filter_makers,
                                   self.router, tracer=self.tracer, stats=context.stats,
                                   on_stream_log=self._log)
        self.handlers: set[HttpConnectionHandler | Http3ServerConnection] = set()
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
        if observability is not None:  # Envoy's http.<prefix>.downstream_rq_time
            observability.latency.downstream(self.settings.stat_prefix,
                                             time.monotonic() - stream.info.start_monotonic)
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
        handler = HttpConnectionHandler(self.manager, ConnectionInfo(
            connection.remote_address, connection.local_address, connection.connection_id,
            scheme="https" if connection.server_ssl is not None else "http",
            buffer_limit=getattr(connection, "buffer_limit", 1024 * 1024)))
        transport: asyncio.BaseTransport | None = None
        try:
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = protocol_for(handler, connection)  # network rbac before the HCM
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, connection.sock, ssl=connection.server_ssl)
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


    def adopt_http3(self, link: QuicLink, *, remote: tuple[str, int], local: tuple[str, int],
                    connection_id: int, buffer_limit: int) -> Http3ServerConnection:
        """A QUIC session (proxy.listeners.quic) negotiated h3: its HTTP/3 connection, served
        by this HCM (drained with it) until the session's `closed` resolves. Stats as Envoy's
        (http.<prefix>.downstream_cx_total, _active, downstream_cx_http3_total, _active)."""
        connection = Http3ServerConnection(self.manager, ConnectionInfo(
            remote, local, connection_id, scheme="https", buffer_limit=buffer_limit),
            link, asyncio.get_running_loop())
        stats = self.context.stats
        prefix = f"http.{self.settings.stat_prefix}."
        for name in ("downstream_cx_total", "downstream_cx_http3_total",
                     "downstream_cx_ssl_total"):
            stats.counter(prefix + name).inc()
        for name in ("downstream_cx_active", "downstream_cx_http3_active"):
            stats.gauge(prefix + name).inc()
        stats.counter(f"http3.quic_version_{link.version_name}").inc()
        self.handlers.add(connection)

        def ended(_: object) -> None:
            self.handlers.discard(connection)
            for name in ("downstream_cx_active", "downstream_cx_http3_active"):
                stats.gauge(prefix + name).dec()
            stats.counter(prefix + "downstream_cx_destroy").inc()
            side = "local" if link.closed_locally else "remote"
            stats.counter(f"{prefix}downstream_cx_destroy_{side}").inc()

        link.closed.add_done_callback(ended)
        if self.settings.idle_timeout:
            connection.arm_idle_timer()
        if self.draining:
            connection.start_draining()
        return connection


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
