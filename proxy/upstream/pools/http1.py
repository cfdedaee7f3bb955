"""HTTP/1.1 keep-alive pool: one request at a time per connection, idle connections reused.

A connection goes back to the idle list only when the response was read to its end, the
request was fully sent and both sides allow keep-alive (RFC 9112 section 9.3); anything else
(reset, timeout, `Connection: close`, a parse error) closes it.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from proxy.http.events import ProtocolFailed, StreamReset
from proxy.http.headers import Headers, RequestHead
from proxy.http.http1 import Http1ClientCodec
from proxy.upstream.host import Host
from proxy.upstream.pools.base import UpstreamStream
from proxy.upstream.pools.connection import WriteFlow, open_pooled


class Http1Connection(asyncio.Protocol):
    def __init__(self, pool: Http1Pool) -> None:
        self.pool = pool
        self.codec = Http1ClientCodec()
        self.transport: asyncio.Transport | None = None
        self.stream: Http1Stream | None = None
        self.flow = WriteFlow()
        self.closed = False
        self.request_sent = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        events = self.codec.receive_data(data)
        stream = self.stream
        for event in events:
            if stream is None:
                continue  # bytes while idle: the connection is unusable
            if isinstance(event, ProtocolFailed):
                stream.deliver(StreamReset(self.codec.stream_id, event.status))
            else:
                stream.deliver(event)
        if stream is None and data:
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.flow.connection_lost()
        stream = self.stream
        if stream is not None:
            for event in self.codec.receive_eof():
                stream.deliver(event)
            if not self.codec.response_complete:
                stream.deliver(StreamReset(self.codec.stream_id, 0))
        self.pool.connection_closed(self)

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
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
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

    async def send_head(self, head: RequestHead, *, end_stream: bool) -> None:
        self.connection.write(self.connection.codec.encode_request_head(head,
                                                                        end_stream=end_stream))
        self._request_done = end_stream
        await self.connection.flow.drained()

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        self.connection.write(self.connection.codec.encode_data(data, end_stream=end_stream))
        self._request_done = end_stream
        await self.connection.flow.drained()

    async def send_trailers(self, trailers: Headers) -> None:
        # Envoy drops request trailers towards HTTP/1.1 upstreams unless enable_trailers.
        await self.send_data(b"", end_stream=True)

    def reset(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._pressure(False)
        self.connection.stream = None
        self.connection.abort()

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
    """Connections to one host of one cluster."""

    def __init__(self, runtime: Any, host: Host, *, connect_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
                 max_idle: int = 64, buffer_limit: int = 1024 * 1024) -> None:
        self.buffer_limit = buffer_limit
        self.runtime = runtime
        self.host = host
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.max_idle = max_idle
        self.idle: list[Http1Connection] = []
        self.busy: set[Http1Connection] = set()
        self.active = 0
        self.closed = False

    async def new_stream(self) -> Http1Stream:
        while self.idle:
            connection = self.idle.pop()
            if connection.reusable:
                return self._start(connection)
        connection = await self._connect()
        return self._start(connection)

    def _start(self, connection: Http1Connection) -> Http1Stream:
        stream = Http1Stream(self.host, connection)
        stream.high_watermark = self.buffer_limit
        connection.stream = stream
        self.busy.add(connection)
        return stream

    async def _connect(self) -> Http1Connection:
        connection = await open_pooled(self, lambda: Http1Connection(self))
        self.active += 1
        return connection

    def return_idle(self, connection: Http1Connection) -> None:
        self.busy.discard(connection)
        if self.closed or len(self.idle) >= self.max_idle:
            connection.close()
            return
        connection.idle_since = asyncio.get_running_loop().time()
        self.idle.append(connection)

    def connection_closed(self, connection: Http1Connection) -> None:
        self.busy.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        self.active -= 1
        self.runtime.connection_closed(self.host)

    def close(self) -> None:
        """Idle connections are dropped at once (abort: no TLS shutdown to wait for); busy
        ones end with their request."""
        self.closed = True
        for connection in list(self.idle):
            connection.abort()
        self.idle.clear()

    def __repr__(self) -> str:
        return (f"Http1Pool({self.host.address}:{self.host.port} active={self.active} "
                f"busy={len(self.busy)} idle={len(self.idle)})")



