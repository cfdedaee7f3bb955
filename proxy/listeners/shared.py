"""What the TCP, UDP and QUIC listeners (proxy.listeners.manager, udp, quic) do alike."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable


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
