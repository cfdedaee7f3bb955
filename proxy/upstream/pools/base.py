"""What the router sees of an upstream request, whatever the pool's protocol.

A pool hands out `UpstreamStream`s: the router sends the request head, body and trailers, then
reads response events (`ResponseReceived`, `DataReceived`, `TrailersReceived`, `StreamEnded`,
`StreamReset`) with `next_event()` and tells the stream how much it consumed, which reopens the
upstream's flow-control window (HTTP/2) or resumes reading the socket (HTTP/1.1).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from proxy.codec.events import DataReceived, Event, ResetReason, StreamEnded
from proxy.codec.headers import Headers, RequestHead
from proxy.upstream.circuit_breakers import Resource
from proxy.upstream.host import Host


class ConnectFailedError(Exception):
    """Connecting to the host failed (response flag UF); `timeout` for connect_timeout.

    `reset_reason` is the failure in Envoy's terms (a connect timeout, a remote failure, or a
    local one such as the pool closing) and `transport_failure` the transport's own words
    (%UPSTREAM_TRANSPORT_FAILURE_REASON%, e.g. "delayed_connect_error: Connection refused")."""

    def __init__(self, reason: str, *, timeout: bool = False, transport_failure: str = "",
                 local: bool = False) -> None:
        super().__init__(reason)
        self.timeout = timeout
        self.transport_failure = transport_failure
        self.local = local

    @property
    def reset_reason(self) -> ResetReason:
        if self.timeout:
            return ResetReason.CONNECTION_TIMEOUT
        if self.local:
            return ResetReason.LOCAL_CONNECTION_FAILURE
        return ResetReason.REMOTE_CONNECTION_FAILURE

    def copy(self) -> ConnectFailedError:
        """The same failure for another waiter (each raises its own exception object)."""
        return ConnectFailedError(str(self), timeout=self.timeout,
                                  transport_failure=self.transport_failure, local=self.local)


class PoolOverflowError(Exception):
    """The circuit breaker refused a pending request or a request (response flag UO)."""


class PoolBreakers:
    """The circuit-breaker steps of Envoy's connection pools (conn_pool_base.cc), shared by
    the HTTP/1.1 and HTTP/2 pools; limits are per cluster and routing priority (DEFAULT).

    - A request that cannot go on a ready connection at once is *pending* until one has room:
      `start_pending` refuses it past max_pending_requests (upstream_rq_pending_overflow) and
      counts upstream_rq_pending_total / upstream_rq_pending_active.
    - A new connection needs a max_connections slot; past the limit the overflow is counted
      (upstream_cx_overflow) and the request stays pending, except that a pool with no
      connection at all still opens one, so its pending requests cannot starve.
    - Putting a request on a connection takes a max_requests slot (`attach`); past the limit
      the request fails with overflow, counted as upstream_rq_pending_overflow as in Envoy.
      The slot is held until the stream is finished (released or reset).
    """

    def __init__(self, runtime: Any) -> None:
        make_breaker = getattr(runtime, "circuit_breaker", None)
        self.breaker = make_breaker() if make_breaker is not None else None
        stats = getattr(runtime, "stats", None)
        prefix = getattr(runtime, "prefix", "")
        self._pending_total = stats.counter(prefix + "upstream_rq_pending_total") \
            if stats is not None else None
        self._pending_active = stats.gauge(prefix + "upstream_rq_pending_active") \
            if stats is not None else None

    def start_pending(self) -> None:
        if self.breaker is not None and not self.breaker.try_acquire(Resource.PENDING_REQUESTS):
            raise PoolOverflowError("max pending requests")
        if self._pending_total is not None and self._pending_active is not None:
            self._pending_total.inc()
            self._pending_active.inc()

    def end_pending(self) -> None:
        if self.breaker is not None:
            self.breaker.release(Resource.PENDING_REQUESTS)
        if self._pending_active is not None:
            self._pending_active.dec()

    def may_connect(self, *, pool_is_empty: bool) -> bool:
        """Take a max_connections slot for a new connection, if the breaker allows it."""
        if self.breaker is None or self.breaker.try_acquire(Resource.CONNECTIONS):
            return True
        if pool_is_empty:
            self.breaker.force_acquire(Resource.CONNECTIONS)
            return True
        return False

    def connection_gone(self) -> None:
        """A connection that held a slot failed to connect or closed."""
        if self.breaker is not None:
            self.breaker.release(Resource.CONNECTIONS)

    def can_attach(self) -> bool:
        return self.breaker is None or self.breaker.can_acquire(Resource.REQUESTS)

    def attach(self, stream: UpstreamStream) -> None:
        """Give `stream` a max_requests slot (released when it finishes) or raise overflow."""
        breaker = self.breaker
        if breaker is None:
            return
        if not breaker.try_acquire(Resource.REQUESTS):
            raise PoolOverflowError("max requests")
        stream.on_finished(lambda: breaker.release(Resource.REQUESTS))


class UpstreamStream:
    """One request/response exchange on an upstream connection (subclassed per protocol)."""

    high_watermark = 1024 * 1024

    def __init__(self, host: Host, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.host = host
        self._loop = loop  # the connection's loop (looked up per wait when None)
        self._events: deque[Event] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._buffered = 0
        self._finished = False
        self._finish_callbacks: list[Callable[[], None]] = []

    @property
    def finished(self) -> bool:
        return self._finished

    @finished.setter
    def finished(self, value: bool) -> None:
        """Subclasses set it when the exchange ends (release or reset); callbacks run once."""
        self._finished = value
        if value and self._finish_callbacks:
            callbacks, self._finish_callbacks = self._finish_callbacks, []
            for callback in callbacks:
                callback()

    def on_finished(self, callback: Callable[[], None]) -> None:
        if self._finished:
            callback()
        else:
            self._finish_callbacks.append(callback)

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
            self._waiter = (self._loop or asyncio.get_running_loop()).create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        event = self.next_event_nowait()
        assert event is not None
        return event

    def next_event_nowait(self) -> Event | None:
        """The next event if one is queued (then no coroutine is needed), else None."""
        if not self._events:
            return None
        event = self._events.popleft()
        if type(event) is DataReceived:
            self._buffered -= len(event.data)
            if self._buffered <= self.high_watermark // 2:
                self._pressure(False)
        return event

    def end_is_next(self) -> bool:
        """Whether the next queued event is the end of the response (no trailers)."""
        return bool(self._events) and isinstance(self._events[0], StreamEnded)

    def consumed(self, event: DataReceived) -> None:
        """The router forwarded `event`: return its flow-control credit."""

    def return_unread(self) -> None:
        """The exchange ended before its response was read out (a reset, the downstream gone):
        give back the credit of the DATA still queued. Unacknowledged, it would stay charged
        to the HTTP/2 connection window, which every later stream shares (RFC 9113 6.9.1)."""
        events = self._events
        while events:
            event = events.popleft()
            if type(event) is DataReceived:
                self.consumed(event)
        self._buffered = 0

    def send_head_nowait(self, head: RequestHead, *, end_stream: bool) -> bool:
        """Send the head when that needs no waiting: True when sent; False: use send_head()."""
        return False

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

