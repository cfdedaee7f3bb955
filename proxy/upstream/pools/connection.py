"""Opening upstream connections (asyncio adapter shared by both pools)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

from proxy.upstream.pools.base import ConnectFailedError

P = TypeVar("P", bound=asyncio.Protocol)


async def open_connection(factory: Callable[[], P], address: str, port: int, *,
                          connect_timeout: float, ssl_context: ssl.SSLContext | None,
                          server_hostname: str | None) -> tuple[asyncio.Transport, P]:
    """Connect within `connect_timeout` (cluster connect_timeout) or raise ConnectFailedError."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout):
            transport, protocol = await loop.create_connection(
                factory, address, port, ssl=ssl_context,
                server_hostname=(server_hostname or address) if ssl_context else None)
    except TimeoutError:
        raise ConnectFailedError("connect timeout", timeout=True) from None
    except ssl.SSLError as error:
        raise ConnectFailedError(f"TLS handshake failed: {error}",
                                 transport_failure=f"TLS_error: {error.reason or error}"
                                 ) from error
    except OSError as error:
        # Envoy's words for a failed non-blocking connect (connection_impl.cc).
        raise ConnectFailedError(f"connect failed: {error}", transport_failure=(
            f"delayed_connect_error: {error.strerror or error}")) from error
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return transport, protocol  # type: ignore[return-value]


async def open_pooled(pool: Any, factory: Callable[[], P]) -> P:
    """A new connection for `pool` (either HTTP pool: host, connect settings, cluster runtime),
    with the outcome recorded on the cluster runtime (upstream_cx_* stats, outlier detection)."""
    try:
        _transport, connection = await open_connection(
            factory, pool.host.address, pool.host.port, connect_timeout=pool.connect_timeout,
            ssl_context=pool.ssl_context, server_hostname=pool.server_hostname)
    except ConnectFailedError as error:
        pool.runtime.connection_failed(pool.host, timeout=error.timeout)
        raise
    pool.runtime.connection_opened(pool.host)
    return connection
