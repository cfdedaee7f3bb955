"""HTTP/2 multiplexed pool: streams share connections up to the peer's max_concurrent_streams.

A new connection is opened only when every live connection is at its stream limit (the
peer's SETTINGS_MAX_CONCURRENT_STREAMS, capped by our cluster's http2_protocol_options), as
Envoy's HTTP/2 pool does. Concurrent callers wait for one connection attempt instead of each
opening their own. Per-stream load balancing happens above this pool: the router picks a
host per request, so one downstream connection spreads over every host's pool.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from proxy.codec.events import (
    ConnectionEnded,
    DataReceived,
    ProtocolFailed,
    ResetReason,
    SettingsChanged,
    StreamReset,
    WindowOpened,
)
from proxy.codec.flow import WriteFlow, send_flow_controlled
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http2 import ErrorCodes, Http2Codec, StreamRefusedError
from proxy.model.protocol_options import ENVOY_DEFAULT_WINDOWS, Http2Windows
from proxy.upstream.host import Host
from proxy.upstream.pools.base import (
    ConnectFailedError,
    PoolBreakers,
    UpstreamStream,
)
from proxy.upstream.pools.connection import open_pooled
from proxy.upstream.pools.idle import IdleTimer
from proxy.upstream.pools.multiplexed import MultiplexedPool

log = logging.getLogger(__name__)

SETTINGS_TIMEOUT = 5.0




class Http2Connection(asyncio.Protocol):
    def __init__(self, pool: Http2Pool) -> None:
        self.pool = pool
        windows = pool.windows
        self.codec = Http2Codec(client_side=True,
                                initial_window_size=windows.initial_stream_window_size,
                                connection_window_size=windows.initial_connection_window_size,
                                header_table_size=windows.hpack_table_size)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Http2Stream] = {}
        # Streams handed out whose HEADERS (and so stream id) are not yet sent.
        self.unsent: set[Http2Stream] = set()
        self.flow = WriteFlow()
        self._loop = self.loop = asyncio.get_running_loop()
        self.settled: asyncio.Future[None] = self._loop.create_future()
        self.window_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.closed_by_us = False  # close() started it (Envoy's LocalClose)
        self.draining = False
        self._flush_scheduled = False
        self.peer_max_streams = 100  # RFC 9113 6.5.2 suggests >= 100 until SETTINGS arrive
        self.holds_slot = False  # took a max_connections slot (released when it closes)
        self.idle_since: float | None = None  # no stream since then (the pool's idle timeout)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.codec.initiate()
        self.flush()

    def data_received(self, data: bytes) -> None:
        for event in self.codec.receive_data(data):
            self._dispatch(event)
        self.flush()

    def _dispatch(self, event: object) -> None:
        stream_id = getattr(event, "stream_id", 0)
        if stream_id and type(event) is not WindowOpened:
            # A stream's event (the frequent case): to its stream, if it is still ours.
            target = self.streams.get(stream_id)
            if target is not None:
                target.deliver(event)  # type: ignore[arg-type]
            elif type(event) is DataReceived:
                self.codec.acknowledge(stream_id, event.flow_controlled_length)
            return
        if isinstance(event, SettingsChanged):
            self.peer_max_streams = self.codec.peer_max_concurrent_streams
            if not self.settled.done():
                self.settled.set_result(None)
            self.pool.capacity_freed()  # the peer may allow more streams now
        elif isinstance(event, WindowOpened):
            self._wake_writers()
        elif isinstance(event, ConnectionEnded):
            self.draining = True
            for stream_id, stream in list(self.streams.items()):
                if stream_id > event.last_stream_id:  # RFC 9113 6.8: never processed
                    stream.deliver(StreamReset(stream_id, ErrorCodes.REFUSED_STREAM))
        elif isinstance(event, ProtocolFailed):
            self.draining = True
            for stream_id, stream in list(self.streams.items()):
                stream.deliver(StreamReset(stream_id, event.status, remote=False,
                                           reason=ResetReason.PROTOCOL_ERROR))
        elif hasattr(event, "stream_id"):
            target = self.streams.get(event.stream_id)
            if target is not None:
                target.deliver(event)  # type: ignore[arg-type]
            elif isinstance(event, DataReceived):
                self.codec.acknowledge(event.stream_id, event.flow_controlled_length)

    def _wake_writers(self) -> None:
        waiters, self.window_waiters = self.window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_window(self) -> None:
        waiter = self._loop.create_future()
        self.window_waiters.append(waiter)
        await waiter

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.flow.connection_lost()
        if not self.settled.done():
            self.settled.set_exception(ConnectFailedError("connection closed before SETTINGS"))
        for stream_id, stream in list(self.streams.items()):
            stream.deliver(StreamReset(stream_id, reason=ResetReason.CONNECTION_TERMINATION))
        self._wake_writers()
        self.pool.connection_closed(self)

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    def flush(self) -> None:
        """Send what the codec produced, once per loop iteration (coalesced writes)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_scheduled = False
        data = self.codec.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    @property
    def capacity(self) -> int:
        if self.closed or self.draining or self.codec.closed:
            return 0
        limit = self.peer_max_streams
        if self.pool.max_concurrent_streams:
            limit = min(limit, self.pool.max_concurrent_streams)
        return limit - len(self.streams) - len(self.unsent)

    def open_stream(self) -> Http2Stream:
        """Reserve a stream slot; the codec assigns the id when the request HEADERS go out,
        so ids stay in the order streams start (RFC 9113 5.1.1)."""
        stream = Http2Stream(self.pool.host, self)
        stream.high_watermark = self.pool.buffer_limit
        self.unsent.add(stream)
        self.idle_since = None
        return stream

    def start_stream(self, stream: Http2Stream, head: RequestHead, end_stream: bool) -> int:
        """Send the request HEADERS; 0 when the connection can no longer open streams."""
        self.unsent.discard(stream)
        try:
            stream_id = self.codec.send_request_head(head, end_stream=end_stream)
        except StreamRefusedError:
            self.draining = True
            return 0
        self.streams[stream_id] = stream
        self.flush()
        return stream_id

    def stream_done(self, stream: Http2Stream) -> None:
        if stream.stream_id:
            self.streams.pop(stream.stream_id, None)
        else:
            self.unsent.discard(stream)
        self.pool.capacity_freed()
        if not self.streams and not self.unsent:
            if self.draining or self.pool.closed:
                self.close()
            else:
                self.idle_since = time.monotonic()
                self.pool.idle_timer.went_idle(self.idle_since)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.closed_by_us = True
            self.codec.close()
            self.flush_now()
            self.transport.close()

    def __repr__(self) -> str:
        return (f"Http2Connection({self.pool.host.address}:{self.pool.host.port} "
                f"streams={len(self.streams)} closed={self.closed})")


class Http2Stream(UpstreamStream):
    def __init__(self, host: Host, connection: Http2Connection) -> None:
        super().__init__(host, connection.loop)
        self.connection = connection
        self.stream_id = 0  # assigned when the HEADERS are sent

    def send_head_nowait(self, head: RequestHead, *, end_stream: bool) -> bool:
        if self.connection.flow.paused:
            return False
        self._start(head, end_stream)
        return True

    async def send_head(self, head: RequestHead, *, end_stream: bool) -> None:
        self._start(head, end_stream)
        if self.stream_id and self.connection.flow.paused:
            await self.connection.flow.drained()

    def _start(self, head: RequestHead, end_stream: bool) -> None:
        """HEADERS out; a refused stream learns it from a StreamReset event."""
        connection = self.connection
        if connection.closed or connection.codec.closed or connection.draining:
            self.deliver(StreamReset(self.stream_id, ErrorCodes.REFUSED_STREAM))
            return
        self.stream_id = connection.start_stream(self, head, end_stream)
        if not self.stream_id:
            self.deliver(StreamReset(0, ErrorCodes.REFUSED_STREAM))

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        await send_flow_controlled(self.connection.codec, self.stream_id, data, end_stream,
                                   self.connection.flush, self.connection.wait_window,
                                   lambda: self.connection.closed or self.finished)
        if self.connection.flow.paused:
            await self.connection.flow.drained()

    async def send_trailers(self, trailers: Headers) -> None:
        if self.connection.codec.stream_open(self.stream_id):
            self.connection.codec.send_trailers(self.stream_id, trailers)
            self.connection.flush()

    def consumed(self, event: DataReceived) -> None:
        self.connection.codec.acknowledge(self.stream_id, event.flow_controlled_length)
        self.connection.flush()

    def reset(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.return_unread()
        if self.stream_id:
            self.connection.codec.reset(self.stream_id, ErrorCodes.CANCEL)
            self.connection.flush()
        self.connection.stream_done(self)

    def release(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.return_unread()
        if self.connection.codec.stream_open(self.stream_id):
            self.connection.codec.reset(self.stream_id, ErrorCodes.NO_ERROR)
            self.connection.flush()
        self.connection.stream_done(self)


class Http2Pool(MultiplexedPool):
    def __init__(self, runtime: Any, host: Host, *, connect_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 max_concurrent_streams: int | None = None,
                 buffer_limit: int = 1024 * 1024,
                 windows: Http2Windows = ENVOY_DEFAULT_WINDOWS,
                 idle_timeout: float | None = 3600.0) -> None:
        self.buffer_limit = buffer_limit
        self.idle_timer = IdleTimer(idle_timeout, self._close_idle_since)
        self.windows = windows
        self.runtime = runtime
        self.host = host
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.max_concurrent_streams = max_concurrent_streams
        self.connections: list[Http2Connection] = []
        self._connecting: asyncio.Task[Http2Connection] | None = None
        self._slot_taken_over = False  # the connect's max_connections slot went to a connection
        self.closed = False
        self.breakers = PoolBreakers(runtime)
        self._capacity_waiters: list[asyncio.Future[None]] = []

    async def _stream_slot(self) -> Http2Stream:
        """A slot on a connection with room, opening one if max_connections allows; without
        a connection slot (upstream_cx_overflow counted) wait for a stream to finish.

        The connection is opened by a task of the pool's, not of the request that asked
        first: every request waiting for it, the first included, may give up (its client
        gone) without the others waiting forever or the max_connections slot being lost."""
        while True:
            for connection in self.connections:
                if connection.capacity > 0:
                    return connection.open_stream()
            if self._connecting is None:
                if not self.breakers.may_connect(pool_is_empty=not self.connections):
                    await self._wait_capacity()
                    continue
                self._slot_taken_over = False
                self._connecting = asyncio.get_running_loop().create_task(
                    self._connect(), name=f"connect {self.host.address}:{self.host.port}")
                self._connecting.add_done_callback(self._connect_done)
            await self._await_connect(self._connecting)

    async def _connect(self) -> Http2Connection:
        """A new connection, settled (the peer's SETTINGS arrived). The max_connections slot
        the caller took goes with the connection (connection_closed gives it back), or back
        to the breaker in _connect_done when no connection came of it."""
        connection = await open_pooled(self, lambda: Http2Connection(self))
        connection.holds_slot = True  # from here connection_closed gives it back
        self._slot_taken_over = True
        self.connections.append(connection)
        try:
            async with asyncio.timeout(SETTINGS_TIMEOUT):
                await connection.settled
        except TimeoutError:
            connection.close()
            raise ConnectFailedError("no SETTINGS from upstream", timeout=True) from None
        return connection

    def connection_closed(self, connection: Http2Connection) -> None:
        if connection in self.connections:
            self.connections.remove(connection)
        if connection.holds_slot:
            connection.holds_slot = False
            self.breakers.connection_gone()
        # Called from connection_lost: the streams it just reset are still listed.
        self.runtime.connection_closed(self.host, local=connection.closed_by_us,
                                       with_active_request=bool(connection.streams))
        self.capacity_freed()

    def close(self) -> None:
        self.closed = True
        self.idle_timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()  # its waiters fail with "connection pool closed"
        for connection in list(self.connections):
            if not connection.streams:
                # GOAWAY goes out (written at once), then the socket closes without waiting
                # for a TLS close_notify round trip, as the HTTP/1.1 pool drops idle ones:
                # a shutting-down loop must not be left holding a half-closed transport.
                connection.close()
                if connection.transport is not None:
                    connection.transport.abort()
