"""Run a chain's read filters in front of its terminal filter's asyncio protocol.

Envoy (envoy/network/filter.h, ReadFilter): each read of the downstream connection, and its
end (onData with end_stream), goes through the read filters in chain order before the
terminal filter; a filter that returns StopIteration after `close(NoFlush)` ends the
connection and the terminal filter sees no more data, only the close (tcp_proxy then closes
its upstream connection, as on any downstream close).

`FilteredProtocol` wraps the terminal filter's protocol (the HCM's connection handler,
tcp_proxy's stream reader) and does exactly that. It sees the transport after the TLS
handshake, so the filters read the verified peer (`connection.peer`). `splice_gate` does the
same for tcp_proxy's zero-copy relay between plain sockets (proxy.network.splice), which
learns each read's size only. The decision itself is in the filters (sans-I/O: `on_data`
returns a bool); these adapters only feed and close.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from proxy.http.peer import peer_from_ssl
from proxy.network.base import DownstreamConnection


class ClosedByFilter(ConnectionAbortedError):
    """The terminal filter's view of a connection a read filter closed."""


def run_read_filters(connection: DownstreamConnection, size: int, end_stream: bool) -> bool:
    """Each read filter in order; False as soon as one stops the connection."""
    return all(f.on_data(connection, size, end_stream) for f in connection.read_filters)


class FilteredProtocol(asyncio.Protocol):
    """The terminal filter's protocol behind the connection's read filters."""

    def __init__(self, inner: Any, connection: DownstreamConnection) -> None:
        self.inner = inner
        self.connection = connection
        self.transport: asyncio.Transport | None = None
        self.stopped = False

    def __repr__(self) -> str:
        return f"FilteredProtocol({self.inner!r}, stopped={self.stopped})"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (TCP, or TLS over it; uvloop's do not subclass asyncio's).
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.connection.peer = peer_from_ssl(ssl_object)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        if not run_read_filters(self.connection, len(data), False):
            self._stop(len(data))
            return
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.stopped:
            return None
        if not run_read_filters(self.connection, 0, True):
            self._stop(0)
            return None
        result: bool | None = self.inner.eof_received()
        return result

    def connection_lost(self, exc: Exception | None) -> None:
        if self.stopped and exc is None:
            exc = ClosedByFilter(self.connection.termination_details or "closed by a filter")
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def _stop(self, withheld: int) -> None:
        """Envoy's close(NoFlush): nothing pending is written; the read is not passed on."""
        self.stopped = True
        self.connection.withheld_bytes += withheld
        if self.transport is not None:
            self.transport.abort()


def protocol_for(inner: Any, connection: DownstreamConnection) -> Any:
    """`inner` itself when the chain has no read filters (no cost on that path)."""
    return FilteredProtocol(inner, connection) if connection.read_filters else inner


def splice_gate(connection: DownstreamConnection) -> Callable[[int, bool], bool] | None:
    """The read filters as proxy.network.splice's gate; None without read filters."""
    if not connection.read_filters:
        return None

    def gate(size: int, end_stream: bool) -> bool:
        if run_read_filters(connection, size, end_stream):
            return True
        connection.withheld_bytes += size
        return False
    return gate
