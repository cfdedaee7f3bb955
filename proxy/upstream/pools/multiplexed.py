"""What the HTTP/2 and HTTP/3 pools share: streams multiplexed over a few connections to one
host, with Envoy's pool steps around each stream (conn_pool_base.cc): a free stream slot now,
or pending (max_pending_requests) until one opens, then a max_requests slot or overflow; one
connect at a time, run by a task of the pool's; idle connections closed after idle_timeout.

A subclass sets `connections`, `_connecting`, `_slot_taken_over`, `breakers`, `host` and
`_capacity_waiters` in its constructor and provides `_stream_slot()` (which opens
connections) and `_connect()`; its connections have `capacity`, `open_stream()`, `streams`,
`unsent`, `idle_since` and `close()`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from proxy.upstream.pools.base import ConnectFailedError, PoolBreakers, PoolOverflowError

log = logging.getLogger(__name__)


class MultiplexedPool:
    connections: list[Any]
    _connecting: asyncio.Task[Any] | None
    _slot_taken_over: bool  # the connect's max_connections slot went to a connection
    breakers: PoolBreakers
    host: Any
    _capacity_waiters: list[asyncio.Future[None]]
    connect_label = "connecting"  # in the log line of an unexpected connect failure

    def try_new_stream(self) -> Any | None:
        """new_stream() without waiting when a connection has a free stream slot now (the
        usual case); None when the request would have to wait."""
        for connection in self.connections:
            if connection.capacity > 0:
                return self._attach(connection.open_stream())
        return None

    async def new_stream(self) -> Any:
        """A stream with Envoy's pool steps around it (conn_pool_base.cc): without a free
        stream slot the request is pending (max_pending_requests) until one opens; then it
        takes a max_requests slot or fails with overflow."""
        ready = self.try_new_stream()
        if ready is not None:
            return ready
        self.breakers.start_pending()
        try:
            stream = await self._stream_slot()
        finally:
            self.breakers.end_pending()
        return self._attach(stream)

    async def _stream_slot(self) -> Any:
        raise NotImplementedError

    def _attach(self, stream: Any) -> Any:
        try:
            self.breakers.attach(stream)
        except PoolOverflowError:
            stream.reset()  # give the unsent stream slot back
            raise
        return stream

    async def _await_connect(self, connecting: asyncio.Task[Any]) -> None:
        """Wait for the pool's connect task; its failure is raised as this waiter's own copy,
        and the pool closing it as a local "connection pool closed"."""
        try:
            await asyncio.shield(connecting)
        except ConnectFailedError as error:
            raise error.copy() from None  # each waiter raises its own exception object
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if connecting.cancelled() and not (current is not None and current.cancelling()):
                raise ConnectFailedError("connection pool closed", local=True) from None
            raise

    def _connect_done(self, connecting: asyncio.Task[Any]) -> None:
        self._connecting = None
        failed = connecting.cancelled() or connecting.exception() is not None
        if failed and not self._slot_taken_over:
            self.breakers.connection_gone()  # even when cancelled before it started
        if not connecting.cancelled():
            error = connecting.exception()  # retrieved: the waiters raise their own copies
            if error is not None and not isinstance(error, ConnectFailedError):
                log.error("%s to %s:%s failed", self.connect_label, self.host.address,
                          self.host.port, exc_info=error)

    async def _wait_capacity(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._capacity_waiters.append(waiter)
        await waiter

    def capacity_freed(self) -> None:
        """A stream finished or a connection went: pending requests look again."""
        waiters, self._capacity_waiters = self._capacity_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _close_idle_since(self, cutoff: float) -> float | None:
        """The idle timeout: close connections without a stream since `cutoff`; the earliest
        idle_since of those still idle, or None."""
        earliest: float | None = None
        for connection in list(self.connections):
            since = connection.idle_since
            if since is None or connection.streams or connection.unsent:
                continue
            if since <= cutoff:
                connection.close()
            elif earliest is None or since < earliest:
                earliest = since
        return earliest

    def __repr__(self) -> str:
        streams = sum(len(c.streams) for c in self.connections)
        return (f"{type(self).__name__}({self.host.address}:{self.host.port} "
                f"connections={len(self.connections)} streams={streams})")
