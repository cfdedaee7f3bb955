"""Opening an upstream connection for an L4 filter: cluster -> host -> connected socket.

The one place tcp_proxy meets the cluster manager (proxy.upstream): check the cluster's
max_connections circuit breaker (Envoy's tcp_proxy refuses with `upstream_cx_overflow`),
choose a host with the connection's LbContext, connect honouring the cluster's
connect_timeout, report the outcome to the cluster runtime (stats, outlier detection), and
retry with a fresh host choice up to `attempts` times (tcp_proxy `max_connect_attempts`),
then write the upstream PROXY protocol header when the cluster's transport socket asks.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.context import ServerContext
from proxy.listeners import proxy_protocol
from proxy.network.base import DownstreamConnection
from proxy.upstream.circuit_breakers import Resource
from proxy.upstream.connect import connect
from proxy.upstream.lb.base import LbContext


class UpstreamConnectError(Exception):
    """No upstream connection; `response_flags` are Envoy's short names for why (access logs):
    NC cluster not found, UO circuit breaker overflow, UH no healthy host, UF connect failure,
    plus URX when the failures used up max_connect_attempts (Envoy's tcp_proxy sets both)."""

    def __init__(self, message: str, *response_flags: str) -> None:
        super().__init__(message)
        self.response_flags = response_flags

    @property
    def no_route(self) -> bool:
        return "NC" in self.response_flags


@dataclass(eq=False)
class UpstreamConnection:
    """A connected upstream: a raw socket (plain TCP, for splice) or, when the cluster
    originates TLS, asyncio streams over the handshaken connection."""

    sock: socket.socket
    host: Any
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    buffer_limit: int = 1024 * 1024  # the cluster's per_connection_buffer_limit_bytes
    on_release: list[Callable[[], None]] = field(default_factory=list)
    closed_by_peer: bool = False  # set by the user before release(): the close's side in stats

    def __repr__(self) -> str:
        return f"UpstreamConnection({self.host!r}, tls={self.streams is not None})"

    def release(self) -> None:
        """Close the connection and give back the connection slot (idempotent)."""
        if self.streams is not None:
            self.streams[1].close()
        self.sock.close()
        while self.on_release:
            self.on_release.pop()()


async def open_upstream(context: ServerContext, cluster_name: str, *, hash_key: int | None,
                        attempts: int, downstream: DownstreamConnection | None = None
                        ) -> UpstreamConnection:
    manager = context.cluster_manager
    runtime = manager.get(cluster_name) if manager is not None else None
    if runtime is None:
        raise UpstreamConnectError(f"unknown cluster {cluster_name!r}", "NC")
    breaker = runtime.circuit_breaker()
    if not breaker.try_acquire(Resource.CONNECTIONS):
        raise UpstreamConnectError(f"cluster {cluster_name!r}: max_connections reached", "UO")
    try:
        connection = await _connect_with_attempts(runtime, cluster_name, hash_key, attempts,
                                                  downstream)
    except BaseException:
        breaker.release(Resource.CONNECTIONS)
        raise
    connection.on_release.append(lambda: breaker.release(Resource.CONNECTIONS))
    return connection


async def _connect_with_attempts(runtime: Any, cluster_name: str, hash_key: int | None,
                                 attempts: int, downstream: DownstreamConnection | None
                                 ) -> UpstreamConnection:
    last_error = "no attempt"
    for _attempt in range(attempts):
        host = runtime.choose_host(LbContext(hash_key=hash_key))
        if host is None:
            runtime.stats.counter(f"cluster.{cluster_name}.upstream_cx_none_healthy").inc()
            raise UpstreamConnectError(f"cluster {cluster_name!r} has no healthy host", "UH")
        try:
            connection = await _connect(runtime, host, downstream)
        except TimeoutError:
            runtime.connection_failed(host, timeout=True)
            last_error = f"connect to {host.address}:{host.port} timed out"
            continue
        except (OSError, ssl.SSLError) as error:  # refused, reset, TLS handshake failure
            runtime.connection_failed(host)
            last_error = f"connect to {host.address}:{host.port}: {error}"
            continue
        runtime.connection_opened(host)
        connection.on_release.append(functools.partial(_count_close, runtime, connection))
        # Envoy's tcp_proxy counts each connection as one upstream request too
        # (upstream_rq_total == upstream_cx_total), which least-request balancing reads.
        runtime.request_started(host)
        connection.on_release.append(functools.partial(runtime.request_finished, host))
        return connection
    raise UpstreamConnectError(last_error, "UF", "URX")


def _count_close(runtime: Any, connection: UpstreamConnection) -> None:
    # Envoy's TCP pool counts every close under tcp_proxy as with an active request (the
    # connection stays assigned until it closes); measured against Envoy 1.40.
    runtime.connection_closed(connection.host, local=not connection.closed_by_peer,
                              with_active_request=True)


async def _connect(runtime: Any, host: Any, downstream: DownstreamConnection | None
                   ) -> UpstreamConnection:
    """One attempt, as Envoy counts it: TCP connect, the PROXY header if configured, then the
    TLS handshake if configured (a handshake failure is a connect failure), all within
    connect_timeout."""
    config = runtime.config
    deadline = asyncio.get_running_loop().time() + config.connect_timeout
    sock = await connect(host.address, host.port, config.connect_timeout)
    try:
        # The host's own transport socket (cluster transport_socket_matches, else the
        # cluster's transport_socket: proxy.model.socket_match).
        transport = config.socket_for(host.socket_metadata,
                                      host.locality_socket_metadata).transport
        await _send_proxy_header(sock, transport, downstream)
        streams = None
        if transport is not None and transport.ssl_context is not None:
            # An empty server_hostname sends no SNI, as Envoy does without `sni`.
            remaining = max(0.001, deadline - asyncio.get_running_loop().time())
            streams = await asyncio.open_connection(
                sock=sock, ssl=transport.ssl_context, server_hostname=transport.sni,
                ssl_handshake_timeout=remaining)
    except BaseException:
        sock.close()
        raise
    return UpstreamConnection(sock, host, streams,
                              buffer_limit=config.per_connection_buffer_limit_bytes)


async def _send_proxy_header(sock: socket.socket, transport: Any,
                             downstream: DownstreamConnection | None) -> None:
    """Upstream PROXY protocol: the downstream client's address and the address it connected
    to, before any other byte (and before a TLS handshake)."""
    version = getattr(transport, "proxy_protocol_version", None)
    if version is None:
        return
    if downstream is None:
        raise OSError("PROXY protocol needs the downstream connection")
    build = proxy_protocol.build_v2 if version == 2 else proxy_protocol.build_v1
    await asyncio.get_running_loop().sock_sendall(
        sock, build(downstream.remote_address, downstream.local_address))
