"""What the router sees of an upstream request, whatever the pool's protocol.

A pool hands out `UpstreamStream`s: the router sends the request head, body and trailers, then
reads response events (`ResponseReceived`, `DataReceived`, `TrailersReceived`, `StreamEnded`,
`StreamReset`) with `next_event()` and tells the stream how much it consumed, which reopens the
upstream's flow-control window (HTTP/2) or resumes reading the socket (HTTP/1.1).
"""

from __future__ import annotations

import asyncio
from collections import deque

from proxy.http.events import DataReceived, Event, StreamEnded, StreamReset
from proxy.http.headers import Headers, RequestHead
from proxy.upstream.host import Host


class ConnectFailedError(Exception):
    """Connecting to the host failed (response flag UF); `timeout` for connect_timeout."""

    def __init__(self, reason: str, *, timeout: bool = False) -> None:
        super().__init__(reason)
        self.timeout = timeout


class PoolOverflowError(Exception):
    """The circuit breaker refused a connection or pending request (response flag UO)."""


class UpstreamStream:
    """One request/response exchange on an upstream connection (subclassed per protocol)."""

    high_watermark = 1024 * 1024

    def __init__(self, host: Host) -> None:
        self.host = host
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._buffered = 0
        self.finished = False

    # --- connection side -----------------------------------------------------------------------

    def deliver(self, event: Event) -> None:
        self._events.append(event)
        if isinstance(event, DataReceived):
            self._buffered += len(event.data)
            if self._buffered > self.high_watermark:
                self._pressure(True)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _pressure(self, on: bool) -> None:
        """Stop/resume reading the upstream (HTTP/1.1); HTTP/2 relies on its windows."""

    # --- router side ---------------------------------------------------------------------------

    async def next_event(self) -> Event:
        while not self._events:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = self._events.popleft()
        if isinstance(event, DataReceived):
            self._buffered -= len(event.data)
            if self._buffered <= self.high_watermark // 2:
                self._pressure(False)
        return event

    def end_is_next(self) -> bool:
        """Whether the next queued event is the end of the response (no trailers)."""
        return bool(self._events) and isinstance(self._events[0], StreamEnded)

    def consumed(self, event: DataReceived) -> None:
        """The router forwarded `event`: return its flow-control credit."""

    async def send_head(self, head: RequestHead, *, end_stream: bool) -> None:
        raise NotImplementedError

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        raise NotImplementedError

    async def send_trailers(self, trailers: Headers) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Abandon the exchange (timeout, downstream gone): the connection is not reused
        (HTTP/1.1) or the stream gets RST_STREAM CANCEL (HTTP/2)."""
        raise NotImplementedError

    def release(self) -> None:
        """The response was read to its end: the connection may serve another request."""
        raise NotImplementedError


def reset_event(stream_id: int, reason: int = 0) -> StreamReset:
    return StreamReset(stream_id, reason, remote=True)
