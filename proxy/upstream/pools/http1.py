"""HTTP/1.1 keep-alive pool: one request at a time per connection, idle connections reused.

A connection goes back to the idle list only when the response was read to its end, the
request was fully sent and both sides allow keep-alive (RFC 9112 section 9.3); anything else
(reset, timeout, `Connection: close`, a parse error) closes it.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

from proxy.codec.events import ProtocolFailed, ResetReason, StreamReset
from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http1 import Http1ClientCodec
from proxy.tasks import log_failure
from proxy.upstream.host import Host
from proxy.upstream.pools.base import (
    ConnectFailedError,
    PoolBreakers,
    PoolOverflowError,
    UpstreamStream,
)
from proxy.upstream.pools.connection import open_pooled
from proxy.upstream.pools.idle import IdleTimer


class Http1Connection(asyncio.Protocol):
    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.codec = Http1ClientCodec(enable_trailers=pool.enable_trailers)
        self.transport: asyncio.Transport | None = None
        self.stream: Http1Stream | None = None
        self.flow = WriteFlow()
        self.closed = False
        self.closed_by_us = False  # close() or abort() started it (Envoy's LocalClose)
        self.abandoned_request = False  # a stream reset with its response unfinished
        self.request_sent = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        events = self.codec.receive_data(data)
        stream = self.stream
        if stream is None:
            if data:
                self.close()  # bytes while idle: the connection is unusable
            return
        deliver = stream.deliver
        for event in events:  # inline: a few per response on the request path
            if type(event) is ProtocolFailed:
                self._protocol_failed(stream)
            else:
                deliver(event)

    def _protocol_failed(self, stream: Http1Stream) -> None:
        """Garbage, a bad status line, an oversized head, a truncated body: Envoy's codec
        resets the stream with ProtocolError (502 UPE before the response started)."""
        stream.deliver(StreamReset(self.codec.stream_id, remote=False,
                                   reason=ResetReason.PROTOCOL_ERROR))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.flow.connection_lost()
        stream = self.stream
        if stream is not None:
            for event in self.codec.receive_eof():
                if type(event) is ProtocolFailed:
                    self._protocol_failed(stream)
                else:
                    stream.deliver(event)
            if not self.codec.response_complete and not self.codec.failed:
                stream.deliver(StreamReset(self.codec.stream_id,
                                           reason=ResetReason.CONNECTION_TERMINATION))
        self.pool.connection_closed(self)

    @property
    def closed_locally(self) -> bool:
        """Ours to count as a local close: we closed it, or the peer's FIN followed a complete
        response that said `connection: close` (Envoy's codec client closes on that header as
        soon as the response is decoded, before it reads on)."""
        return self.closed_by_us or (self.stream is not None and self.codec.response_complete
                                     and not self.codec.keep_alive and not self.codec.tunnel)

    @property
    def closed_with_active_request(self) -> bool:
        return self.abandoned_request or (self.stream is not None
                                          and not self.codec.response_complete)

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    @property
    def reusable(self) -> bool:
        return (not self.closed and self.stream is None and self.codec.keep_alive
                and not self.codec.tunnel)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.closed_by_us = True
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            if not self.transport.is_closing():
                self.closed_by_us = True
            self.transport.abort()

    def __repr__(self) -> str:
        return (f"Http1Connection({self.pool.host.address}:{self.pool.host.port} "
                f"busy={self.stream is not None} closed={self.closed})")


class Http1Stream(UpstreamStream):
    def __init__(self, host: Host, connection: Http1Connection) -> None:
        super().__init__(host)
        self.connection = connection
        self._request_done = False

    def _pressure(self, on: bool) -> None:
        transport = self.connection.transport
        if transport is None or self.connection.closed:
            return
        if on:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def send_head_nowait(self, head: RequestHead, *, end_stream: bool) -> bool:
        if self.connection.flow.paused:
            return False
        self._write_head(head, end_stream)
        return True

    async def send_head(self, head: RequestHead, *, end_stream: bool) -> None:
        self._write_head(head, end_stream)
        if self.connection.flow.paused:
            await self.connection.flow.drained()

    def _write_head(self, head: RequestHead, end_stream: bool) -> None:
        self.connection.write(self.connection.codec.encode_request_head(head,
                                                                        end_stream=end_stream))
        self._request_done = end_stream

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        self.connection.write(self.connection.codec.encode_data(data, end_stream=end_stream))
        self._request_done = end_stream
        if self.connection.flow.paused:
            await self.connection.flow.drained()

    async def send_trailers(self, trailers: Headers) -> None:
        # Dropped unless the cluster's http_protocol_options.enable_trailers (see http1.py).
        self.connection.write(self.connection.codec.encode_trailers(trailers))
        self._request_done = True
        if self.connection.flow.paused:
            await self.connection.flow.drained()

    def reset(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._pressure(False)
        connection = self.connection
        connection.abandoned_request = not connection.codec.response_complete
        connection.stream = None
        connection.abort()

    def release(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._pressure(False)
        connection = self.connection
        connection.stream = None
        if self._request_done and connection.codec.response_complete and connection.reusable:
            self.connection.pool.return_idle(connection)
        else:
            connection.close()


class Http1Pool:
    """Connections to one host of one cluster (Envoy's HTTP/1.1 pool, conn_pool_base.cc).

    A request takes an idle connection at once; otherwise it is pending (circuit breaker
    max_pending_requests) and one connection is opened per pending request while
    max_connections allows. A connection that connects or finishes a response serves the
    oldest pending request first. A failed connect fails every pending request (Envoy purges
    them so the router can retry elsewhere).
    """

    def __init__(self, runtime: Any, host: Host, *, connect_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 max_idle: int = 64, buffer_limit: int = 1024 * 1024,
                 enable_trailers: bool = False, idle_timeout: float | None = 3600.0) -> None:
        self.buffer_limit = buffer_limit
        self.enable_trailers = enable_trailers
        self.runtime = runtime
        self.host = host
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.max_idle = max_idle
        self.breakers = PoolBreakers(runtime)
        self.idle: list[Http1Connection] = []
        self.busy: set[Http1Connection] = set()
        self.pending: deque[asyncio.Future[Http1Stream]] = deque()
        self.connecting = 0
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self.active = 0
        self.closed = False
        self.idle_timer = IdleTimer(idle_timeout, self._close_idle_since)

    def try_new_stream(self) -> Http1Stream | None:
        """new_stream() without waiting when an idle connection is ready; else None."""
        connection = self._take_idle()
        return self._attach(connection) if connection is not None else None

    async def new_stream(self) -> Http1Stream:
        ready = self.try_new_stream()
        if ready is not None:
            return ready
        self.breakers.start_pending()
        waiter: asyncio.Future[Http1Stream] = asyncio.get_running_loop().create_future()
        self.pending.append(waiter)
        try:
            self._connect_for_pending()
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().reset()  # handed a connection just as the caller gave up
            raise
        finally:
            if waiter in self.pending:
                self.pending.remove(waiter)
            self.breakers.end_pending()

    def _take_idle(self) -> Http1Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable:
                return connection
            connection.close()
        return None

    def _attach(self, connection: Http1Connection) -> Http1Stream:
        stream = Http1Stream(self.host, connection)
        stream.high_watermark = self.buffer_limit
        self.breakers.attach(stream)  # may raise PoolOverflowError (max_requests)
        connection.stream = stream
        self.busy.add(connection)
        return stream

    def _serve_pending(self, connection: Http1Connection) -> bool:
        """Give a ready connection to the oldest pending request; True if one took it.
        Requests refused by max_requests on the way fail with overflow."""
        while self.pending:
            waiter = self.pending.popleft()
            if waiter.done():
                continue
            try:
                waiter.set_result(self._attach(connection))
                return True
            except PoolOverflowError as error:
                waiter.set_exception(error)
        return False

    def _connect_for_pending(self) -> None:
        """Envoy tryCreateNewConnections: one connection per pending request not yet covered
        by a connection being opened, within max_connections."""
        while not self.closed and len(self.pending) > self.connecting:
            empty = not (self.idle or self.busy or self.connecting)
            if not self.breakers.may_connect(pool_is_empty=empty):
                return
            self.connecting += 1
            task = asyncio.get_running_loop().create_task(self._connect_one())
            self._connect_tasks.add(task)
            task.add_done_callback(self._connect_tasks.discard)
            task.add_done_callback(log_failure)  # connect failures are handled inside

    async def _connect_one(self) -> None:
        try:
            connection = await open_pooled(self, lambda: Http1Connection(self))
        except ConnectFailedError as error:
            self.connecting -= 1
            self.breakers.connection_gone()
            self._fail_pending(error)
            return
        except BaseException as error:  # cancelled (the pool closes), or a bug (logged)
            self.connecting -= 1
            self.breakers.connection_gone()
            if not isinstance(error, asyncio.CancelledError):
                # Pending requests must not wait for a connection that will never come.
                self._fail_pending(ConnectFailedError(f"connect failed: {error!r}", local=True))
            raise
        self.connecting -= 1
        self.active += 1
        self.busy.add(connection)
        self.return_idle(connection)

    def _fail_pending(self, error: ConnectFailedError) -> None:
        waiters, self.pending = self.pending, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(error.copy())

    def return_idle(self, connection: Http1Connection) -> None:
        self.busy.discard(connection)
        if self.closed or not connection.reusable:
            connection.close()
            return
        if self._serve_pending(connection):
            return
        if len(self.idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self.idle.append(connection)
        self.idle_timer.went_idle(connection.idle_since)

    def _close_idle_since(self, cutoff: float) -> float | None:
        """The idle timeout: close connections idle since `cutoff` (the oldest come first in
        `idle`, which is taken from the end); the next one's idle_since, or None."""
        while self.idle and self.idle[0].idle_since <= cutoff:
            self.idle.pop(0).close()
        return self.idle[0].idle_since if self.idle else None

    def connection_closed(self, connection: Http1Connection) -> None:
        self.busy.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        self.active -= 1
        self.breakers.connection_gone()
        self.runtime.connection_closed(self.host, local=connection.closed_locally,
                                       with_active_request=connection.closed_with_active_request)
        if self.pending:
            self._connect_for_pending()  # a freed max_connections slot serves the queue

    def close(self) -> None:
        """Idle connections are dropped at once (abort: no TLS shutdown to wait for); busy
        ones end with their request; pending requests fail and connects in progress stop."""
        self.closed = True
        self.idle_timer.cancel()
        for connection in list(self.idle):
            connection.abort()
        self.idle.clear()
        for task in list(self._connect_tasks):
            task.cancel()
        self._fail_pending(ConnectFailedError("connection pool closed", local=True))

    def __repr__(self) -> str:
        return (f"Http1Pool({self.host.address}:{self.host.port} active={self.active} "
                f"busy={len(self.busy)} idle={len(self.idle)} pending={len(self.pending)} "
                f"connecting={self.connecting})")
