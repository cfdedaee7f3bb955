"""`envoy.filters.network.tcp_proxy`: byte passthrough to a cluster chosen per connection.

Envoy doc: configuration/listeners/network_filters/tcp_proxy_filter and
api/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto. Supported: `stat_prefix`,
`cluster`, `weighted_clusters` (a cluster picked at random in proportion to its weight, per
connection), `idle_timeout` (default 1 h, 0 disables), `max_connect_attempts` (default 1; each
attempt picks a host again), `hash_policy` with `source_ip` (the LB hash key; without it hash
load balancers pick at random, as Envoy does). Half-close is passed through.

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
from dataclasses import dataclass
from typing import Any

from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.context import ServerContext
from proxy.model.fields import reject_unsupported, seconds
from proxy.network.base import DownstreamConnection, register
from proxy.network.splice import RelayClosed, SpliceRelay
from proxy.network.upstream_connect import UpstreamConnectError, open_upstream
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
                                 "max_connect_attempts", "hash_policy"})
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
                          _hash_source_ip(message))


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

    def __repr__(self) -> str:
        return f"TcpProxyFilter({self.config.stat_prefix} -> {self.config.cluster_names})"

    async def on_new_connection(self, connection: DownstreamConnection) -> None:
        self.cx_total.inc()
        upstream = None
        try:
            cluster = choose_cluster(self.config.clusters, random.getrandbits(32))
            # tcp_proxy hash_policy source_ip: the LB hash key is the client's address.
            hash_key = hash_of(connection.remote_address[0]) if self.config.hash_source_ip \
                else None
            try:
                upstream = await open_upstream(self.context, cluster, hash_key=hash_key,
                                               attempts=self.config.max_connect_attempts,
                                               downstream=connection)
            except UpstreamConnectError as error:
                # Connect failures are counted on the cluster (upstream_cx_connect_fail...).
                if error.no_route:
                    self.cx_no_route.inc()
                log.debug("tcp_proxy %s: %s", self.config.stat_prefix, error)
                return
            await self._relay(connection, upstream.sock, upstream.ssl_context, upstream.sni)
        finally:
            if upstream is not None:
                upstream.release()
            connection.sock.close()

    async def _relay(self, connection: DownstreamConnection, upstream_sock: socket.socket,
                     upstream_ssl: ssl.SSLContext | None, sni: str) -> None:
        try:
            if connection.server_ssl is None and upstream_ssl is None:
                relay = SpliceRelay(connection.sock, upstream_sock,
                                    idle_timeout=self.config.idle_timeout)
                try:
                    await relay.run()
                finally:
                    self.cx_rx_bytes.inc(relay.upstream_bound.transferred)
                    self.cx_tx_bytes.inc(relay.downstream_bound.transferred)
            else:
                await self._relay_streams(connection, upstream_sock, upstream_ssl, sni)
        except RelayClosed as error:
            if "idle" in str(error):
                self.idle_timeouts.inc()
        except TimeoutError:
            self.idle_timeouts.inc()
        except (OSError, ssl.SSLError, EOFError) as error:
            log.debug("tcp_proxy %s: %s", self.config.stat_prefix, error)

    async def _relay_streams(self, connection: DownstreamConnection,
                             upstream_sock: socket.socket, upstream_ssl: ssl.SSLContext | None,
                             sni: str) -> None:
        down_reader, down_writer = await accepted_streams(connection.sock,
                                                          connection.server_ssl)
        try:
            # An empty server_hostname sends no SNI, as Envoy does without `sni`.
            up_reader, up_writer = await asyncio.open_connection(
                sock=upstream_sock, ssl=upstream_ssl,
                server_hostname=sni if upstream_ssl else None)
            try:
                await self._pump_both(down_reader, down_writer, up_reader, up_writer)
            finally:
                await _close(up_writer)
        except* (OSError, ssl.SSLError, EOFError, _HalfCloseUnsupported):
            pass
        finally:
            await _close(down_writer)

    async def _pump_both(self, down_reader: asyncio.StreamReader,
                         down_writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
                         up_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        idle = self.config.idle_timeout
        async with asyncio.timeout(idle) as deadline:
            def touch() -> None:
                if idle is not None:
                    deadline.reschedule(loop.time() + idle)
            async with asyncio.TaskGroup() as group:
                group.create_task(_pump(down_reader, up_writer, touch, self.cx_rx_bytes))
                group.create_task(_pump(up_reader, down_writer, touch, self.cx_tx_bytes))


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait until the transport let go of its socket (no leak at shutdown)."""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()


class _HalfCloseUnsupported(Exception):
    """A TLS side ended its stream: TLS cannot half-close, so the whole connection ends."""


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, touch: Any,
                counter: Any) -> None:
    while data := await reader.read(_READ_SIZE):
        writer.write(data)
        counter.inc(len(data))
        touch()
        await writer.drain()
    if not writer.can_write_eof():
        raise _HalfCloseUnsupported
    writer.write_eof()


async def accepted_streams(sock: socket.socket, server_ssl: ssl.SSLContext | None
                           ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams over an accepted socket, terminating TLS with `server_ssl` when given."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_SIZE)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock, ssl=server_ssl)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return reader, writer


class TcpProxyFactory:
    config_type = CONFIG_TYPE

    def translate(self, message: Message) -> TcpProxyConfig:
        return translate_tcp_proxy(message)

    def create(self, config: Any, context: ServerContext) -> TcpProxyFilter:
        return TcpProxyFilter(config, context)


register(TcpProxyFactory())
