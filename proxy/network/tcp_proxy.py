"""`envoy.filters.network.tcp_proxy`: byte passthrough to a cluster chosen per connection.

Envoy doc: configuration/listeners/network_filters/tcp_proxy_filter and
api/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto. Supported: `stat_prefix`,
`cluster`, `weighted_clusters` (a cluster picked at random in proportion to its weight, per
connection), `idle_timeout` (default 1 h, 0 disables), `max_connect_attempts` (default 1; each
attempt picks a host again), `hash_policy` with `source_ip` (the LB hash key; without it hash
load balancers pick at random, as Envoy does), `access_log` (proxy.observability: one record
per connection with bytes, upstream host and response flags NC/UO/UH/UF/URX). Half-close is passed
through. With OTEL_* tracing configured, a span per connection.

Data path: both sides plain TCP -> proxy.network.splice (zero copy); TLS on either side
(termination by the chain's transport socket, origination by the cluster's) -> asyncio streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.context import ServerContext
from proxy.model.fields import reject_unsupported, seconds
from proxy.network.base import DownstreamConnection, register
from proxy.network.read_filters import protocol_for, splice_gate
from proxy.network.splice import RelayClosed, SpliceRelay
from proxy.network.upstream_connect import (
    UpstreamConnectError,
    UpstreamConnection,
    open_upstream,
)
from proxy.upstream.lb.base import hash_of

log = logging.getLogger(__name__)

CONFIG_TYPE = "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
DEFAULT_IDLE_TIMEOUT = 3600.0  # tcp_proxy.proto: "If not set, defaults to 1 hour"
_READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class WeightedCluster:
    name: str
    weight: int


@dataclass(frozen=True)
class TcpProxyConfig:
    stat_prefix: str
    clusters: tuple[WeightedCluster, ...]  # one entry with weight 1 for `cluster`
    idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT
    max_connect_attempts: int = 1
    hash_source_ip: bool = False
    access_logs: tuple[Any, ...] = ()  # proxy.observability AccessLogConfig

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.clusters)


def choose_cluster(clusters: tuple[WeightedCluster, ...], draw: int) -> str:
    """Envoy's weighted pick: `draw % total_weight` walks the clusters in order."""
    total = sum(item.weight for item in clusters)
    point = draw % total
    for item in clusters:
        if point < item.weight:
            return item.name
        point -= item.weight
    return clusters[-1].name


def translate_tcp_proxy(message: Message) -> TcpProxyConfig:
    assert isinstance(message, tcp_proxy_pb2.TcpProxy)
    reject_unsupported(message, {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout",
                                 "max_connect_attempts", "hash_policy", "access_log"})
    if not message.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    kind = message.WhichOneof("cluster_specifier")
    if kind == "cluster":
        clusters: tuple[WeightedCluster, ...] = (WeightedCluster(message.cluster, 1),)
    elif kind == "weighted_clusters":
        clusters = _weighted(message.weighted_clusters)
    else:
        raise ConfigError("one of cluster or weighted_clusters is required", field="cluster")
    idle: float | None = DEFAULT_IDLE_TIMEOUT
    if message.HasField("idle_timeout"):
        idle = seconds(message.idle_timeout) or None
    attempts = 1
    if message.HasField("max_connect_attempts"):
        attempts = message.max_connect_attempts.value
        if attempts < 1:
            raise ConfigError("must be at least 1", field="max_connect_attempts")
    return TcpProxyConfig(message.stat_prefix, clusters, idle, attempts,
                          _hash_source_ip(message), _access_logs(message))


def _access_logs(message: Any) -> tuple[Any, ...]:
    if not message.access_log:
        return ()
    from proxy.observability.access_log.config import translate_access_logs

    return translate_access_logs(message.access_log, field="access_log")


def _weighted(message: Any) -> tuple[WeightedCluster, ...]:
    result = []
    for index, item in enumerate(message.clusters):
        prefix = f"weighted_clusters.clusters[{index}]"
        reject_unsupported(item, {"name", "weight"}, prefix=prefix + ".")
        if not item.name:
            raise ConfigError("a cluster name is required", field=prefix + ".name")
        if item.weight < 1:
            raise ConfigError("weight must be at least 1", field=prefix + ".weight")
        result.append(WeightedCluster(item.name, item.weight))
    if not result:
        raise ConfigError("at least one cluster is required", field="weighted_clusters.clusters")
    return tuple(result)


def _hash_source_ip(message: Any) -> bool:
    if not message.hash_policy:
        return False
    if len(message.hash_policy) > 1:
        raise unsupported("hash_policy[1]", "one hash policy")
    policy = message.hash_policy[0]
    if policy.WhichOneof("policy_specifier") != "source_ip":
        raise unsupported("hash_policy[0].filter_state")
    return True


@dataclass
class _ConnectionRecord:
    """What one proxied connection did, for the access log and the span."""

    start_time: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)
    cluster: str = ""
    upstream_host: str = ""
    response_flags: list[str] = field(default_factory=list)
    received: int = 0
    sent: int = 0
    # The upstream's end (FIN or error) was the last event: Envoy counts the upstream close as
    # remote (upstream_cx_destroy_remote*), else as local.
    upstream_closed_last: bool = False
    # Read from the downstream but kept from the upstream by a read filter (network rbac).
    withheld: int = 0


class TcpProxyFilter:
    def __init__(self, config: TcpProxyConfig, context: ServerContext) -> None:
        self.config = config
        self.context = context
        scope = f"tcp.{config.stat_prefix}."
        stats = context.stats
        self.cx_total = stats.counter(scope + "downstream_cx_total")
        self.cx_no_route = stats.counter(scope + "downstream_cx_no_route")
        self.cx_rx_bytes = stats.counter(scope + "downstream_cx_rx_bytes_total")
        self.cx_tx_bytes = stats.counter(scope + "downstream_cx_tx_bytes_total")
        self.idle_timeouts = stats.counter(scope + "idle_timeout")
        observability = context.observability
        self.access_logger = (observability.access_logger(config.access_logs)
                              if observability is not None and config.access_logs else None)

    def __repr__(self) -> str:
        return f"TcpProxyFilter({self.config.stat_prefix} -> {self.config.cluster_names})"

    async def on_new_connection(self, connection: DownstreamConnection) -> None:
        self.cx_total.inc()
        record = _ConnectionRecord()
        upstream = None
        record.cluster = choose_cluster(self.config.clusters, random.getrandbits(32))
        span = self._span(connection, record.cluster)
        try:
            # tcp_proxy hash_policy source_ip: the LB hash key is the client's address.
            hash_key = hash_of(connection.remote_address[0]) if self.config.hash_source_ip \
                else None
            try:
                upstream = await open_upstream(self.context, record.cluster, hash_key=hash_key,
                                               attempts=self.config.max_connect_attempts,
                                               downstream=connection)
            except UpstreamConnectError as error:
                # Connect failures are counted on the cluster (upstream_cx_connect_fail...).
                if error.no_route:
                    self.cx_no_route.inc()
                record.response_flags.extend(error.response_flags)
                log.debug("tcp_proxy %s: %s", self.config.stat_prefix, error)
                return
            record.upstream_host = f"{upstream.host.address}:{upstream.host.port}"
            await self._relay(connection, upstream, record)
        finally:
            self._count_withheld(connection, record)
            if upstream is not None:
                upstream.closed_by_peer = record.upstream_closed_last
                upstream.release()
                self._count_upstream_bytes(record)
            connection.sock.close()
            if self.access_logger is not None or span is not None:
                self._log(connection, record, span)

    def _count_withheld(self, connection: DownstreamConnection,
                        record: _ConnectionRecord) -> None:
        """Bytes a read filter stopped: Envoy's connection counted them as received."""
        record.withheld = connection.withheld_bytes
        self.cx_rx_bytes.inc(record.withheld)

    def _count_upstream_bytes(self, record: _ConnectionRecord) -> None:
        # Envoy's cluster stats: what went to (tx) and came from (rx) the upstream.
        scope = f"cluster.{record.cluster}."
        self.context.stats.counter(scope + "upstream_cx_tx_bytes_total").inc(record.received)
        self.context.stats.counter(scope + "upstream_cx_rx_bytes_total").inc(record.sent)

    def _span(self, connection: DownstreamConnection, cluster: str) -> Any:
        observability = self.context.observability
        if observability is None:
            return None
        return observability.tcp_span(None, listener=connection.listener_name, cluster=cluster,
                                      downstream=connection.remote_address,
                                      server_name=connection.server_name)

    def _log(self, connection: DownstreamConnection, record: _ConnectionRecord,
             span: Any) -> None:
        from proxy.observability.request_info import RequestInfo

        info = RequestInfo(
            start_time=record.start_time, duration=time.monotonic() - record.started,
            response_flags=tuple(record.response_flags), upstream_host=record.upstream_host,
            upstream_cluster=record.cluster, bytes_received=record.received + record.withheld,
            bytes_sent=record.sent, downstream_remote_address=connection.remote_address,
            downstream_local_address=connection.local_address,
            requested_server_name=connection.server_name,
            connection_id=connection.connection_id,
            connection_termination_details=connection.termination_details)
        if span is not None:
            span.finish(info)
        if self.access_logger is not None:
            self.access_logger.log(info)

    async def _relay(self, connection: DownstreamConnection, upstream: UpstreamConnection,
                     record: _ConnectionRecord) -> None:
        try:
            if connection.server_ssl is None and upstream.streams is None:
                relay = SpliceRelay(connection.sock, upstream.sock,
                                    idle_timeout=self.config.idle_timeout,
                                    downstream_buffer=connection.buffer_limit,
                                    upstream_buffer=upstream.buffer_limit,
                                    gate=splice_gate(connection))
                try:
                    await relay.run()
                finally:
                    record.upstream_closed_last = relay.upstream_closed_last
                    record.received = relay.upstream_bound.transferred
                    record.sent = relay.downstream_bound.transferred
                    self.cx_rx_bytes.inc(record.received)
                    self.cx_tx_bytes.inc(record.sent)
            else:
                await self._relay_streams(connection, upstream, record)
        except RelayClosed as error:
            if error.idle:
                self.idle_timeouts.inc()
        except TimeoutError:
            self.idle_timeouts.inc()
            record.upstream_closed_last = False  # we close both
        except (OSError, ssl.SSLError, EOFError) as error:
            log.debug("tcp_proxy %s: %s", self.config.stat_prefix, error)

    async def _relay_streams(self, connection: DownstreamConnection,
                             upstream: UpstreamConnection, record: _ConnectionRecord) -> None:
        down_reader, down_writer = await accepted_streams(connection.sock,
                                                          connection.server_ssl, connection)
        try:
            up_reader, up_writer = upstream.streams or await asyncio.open_connection(
                sock=upstream.sock)
            try:
                await self._pump_both(down_reader, down_writer, up_reader, up_writer, record)
            finally:
                await _close(up_writer)
        except* (OSError, ssl.SSLError, EOFError, _HalfCloseUnsupported):
            pass
        finally:
            await _close(down_writer)

    async def _pump_both(self, down_reader: asyncio.StreamReader,
                         down_writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                         up_writer: asyncio.StreamWriter, record: _ConnectionRecord) -> None:
        loop = asyncio.get_running_loop()
        idle = self.config.idle_timeout
        async with asyncio.timeout(idle) as deadline:
            def touch() -> None:
                if idle is not None:
                    deadline.reschedule(loop.time() + idle)
            def received(size: int) -> None:
                record.received += size
                self.cx_rx_bytes.inc(size)

            def sent(size: int) -> None:
                record.sent += size
                self.cx_tx_bytes.inc(size)

            def ended(upstream: bool) -> None:
                record.upstream_closed_last = upstream

            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(down_reader, up_writer, touch, received,
                                        lambda: ended(False)))
                group.create_task(_pump(up_reader, down_writer, touch, sent,
                                        lambda: ended(True)))


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait until the transport let go of its socket (no leak at shutdown)."""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


class _HalfCloseUnsupported(Exception):
    """A TLS side ended its stream: TLS cannot half-close, so the whole connection ends."""


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, touch: Any,
                count: Any, source_ended: Callable[[], None]) -> None:
    """Copy one way; `source_ended` is called when the reading side ends (FIN or error)."""
    while True:
        try:
            data = await reader.read(_READ_SIZE)
        except (OSError, ssl.SSLError):
            source_ended()
            raise
        if not data:
            break
        writer.write(data)
        count(len(data))
        touch()
        await writer.drain()
    source_ended()
    if not writer.can_write_eof():
        raise _HalfCloseUnsupported
    writer.write_eof()


async def accepted_streams(sock: socket.socket, server_ssl: ssl.SSLContext | None,
                           connection: DownstreamConnection | None = None
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over an accepted socket, terminating TLS with `server_ssl` when given; the
    connection's read filters (proxy.network.read_filters) see each read first."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_SIZE)
    protocol = asyncio.StreamReaderProtocol(reader)
    wrapped = protocol if connection is None else protocol_for(protocol, connection)
    transport, _ = await loop.connect_accepted_socket(lambda: wrapped, sock, ssl=server_ssl)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


class TcpProxyFactory:
    config_type = CONFIG_TYPE

    def translate(self, message: Message) -> TcpProxyConfig:
        return translate_tcp_proxy(message)

    def create(self, config: Any, context: ServerContext) -> TcpProxyFilter:
        return TcpProxyFilter(config, context)


register(TcpProxyFactory())
