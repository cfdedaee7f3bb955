"""What the TCP, UDP and QUIC listeners (proxy.listeners.manager, udp, quic) do alike."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable

from proxy.model.listener import Listener


def bind_socket(listener: Listener, kind: socket.SocketKind, *,
                reuse_port: bool) -> socket.socket:
    """A non-blocking socket of `kind` (stream or datagram) bound to the listener's address,
    SO_REUSEPORT when workers share it or Listener.enable_reuse_port (default true, as in
    Envoy) says so; closed again if binding fails."""
    host, port = listener.address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port or listener.enable_reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_address(sock: socket.socket | None, configured: tuple[str, int]) -> tuple[str, int]:
    """Where a listener listens: its socket's address once bound (port 0 picks one), else the
    configured one."""
    if sock is None:
        return configured
    host, port = sock.getsockname()[:2]
    return host, port


async def finish_connections(connections: Iterable[asyncio.Task[None]],
                             drain_timeout: float) -> None:
    """A draining generation's connections get `drain_timeout` seconds to end by themselves
    (Envoy's drain_timeout, intro/arch_overview/operations/draining); the rest are ended."""
    pending = set(connections)
    if drain_timeout > 0 and pending:
        _done, pending = await asyncio.wait(pending, timeout=drain_timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
