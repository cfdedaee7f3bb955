"""HTTP/3 upstream pool: requests multiplexed on QUIC connections (aioquic), for clusters with
`explicit_http_config.http3_protocol_options` and the `envoy.transport_sockets.quic`
transport socket (Envoy docs intro/arch_overview/http/http3, "upstream HTTP/3").

- `Http3Connection` is the thin asyncio adapter: a connected UDP socket
  (DatagramProtocol) feeding aioquic's client QuicConnection, one loop timer re-armed from
  `get_timer()`, and the sans-I/O Http3ClientCodec (proxy.codec.http3_client) translating
  streams. TLS 1.3 inside QUIC: SNI from the UpstreamTlsContext's `sni`, the server chain
  verified against `trusted_ca` when set (without it, not verified, as Envoy's TLS upstreams
  do without a validation context), ALPN h3 (RFC 9114 3.1).
- The handshake is the connect: it must finish within the cluster's connect_timeout (UF,
  connection timeout); an ICMP refusal (ECONNREFUSED on the connected socket) fails it at
  once (UF, local connection failure, as Envoy's QUIC client says).
- A connection takes streams up to the server's MAX_STREAMS (RFC 9000 4.6); a new connection
  is opened only when every live one is full, and concurrent callers share one attempt.
- A connection that ends (CONNECTION_CLOSE, idle timeout, ICMP refusal) resets the streams
  in flight with Envoy's "connection termination" (503 UC before a response started).
- Circuit breakers and accounting as in the HTTP/2 pool (PoolBreakers): every stream gives
  its slot back when it is released or reset, whichever path ends it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration

from proxy.codec.events import ResetReason, StreamReset
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http3 import ALPN, H3_NO_ERROR, FlowControlledQuicConnection
from proxy.codec.http3_client import Http3ClientCodec
from proxy.model.tls import UpstreamTls
from proxy.upstream.host import Host
from proxy.upstream.pools.base import (
    ConnectFailedError,
    PoolBreakers,
    UpstreamStream,
)
from proxy.upstream.pools.idle import IdleTimer
from proxy.upstream.pools.multiplexed import MultiplexedPool

log = logging.getLogger(__name__)


def client_configuration(tls: UpstreamTls | None, host: Host) -> QuicConfiguration:
    """aioquic's client configuration from the QuicUpstreamTransport's UpstreamTlsContext."""
    configuration = QuicConfiguration(is_client=True, alpn_protocols=list(ALPN))
    configuration.server_name = (tls.sni if tls is not None and tls.sni else None) or host.address
    trusted = tls.validation.trusted_ca if tls is not None and tls.validation else None
    if trusted:
        configuration.load_verify_locations(cadata=trusted)
        configuration.verify_mode = ssl.CERT_REQUIRED
    else:
        configuration.verify_mode = ssl.CERT_NONE
    return configuration


class ClientQuicConnection(FlowControlledQuicConnection):
    """Remembers whether we closed the connection (aioquic closes it itself on a protocol or
    TLS error of the peer's, e.g. a certificate trusted_ca does not sign): Envoy calls such
    a failed connect a local connection failure, a CONNECTION_CLOSE from the server a remote
    one."""

    closed_locally = False

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.closed_locally = True
        super().close(*args, **kwargs)


class Http3Connection(asyncio.DatagramProtocol):
    def __init__(self, pool: Http3Pool) -> None:
        self.pool = pool
        self.loop = asyncio.get_running_loop()
        self.quic = ClientQuicConnection(
            configuration=client_configuration(pool.tls, pool.host))
        self.codec = Http3ClientCodec(self.quic)
        self.transport: asyncio.DatagramTransport | None = None
        self.streams: dict[int, Http3Stream] = {}
        self.unsent: set[Http3Stream] = set()
        self.handshake: asyncio.Future[None] = self.loop.create_future()
        self.ack_waiters: list[asyncio.Future[None]] = []
        self.closed = False
        self.closed_by_us = False
        self.opened = False  # the handshake completed and the runtime counted it
        self.idle_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_scheduled = False

    # --- asyncio side --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.quic.connect((self.pool.host.address, self.pool.host.port), now=self.loop.time())
        self.transmit()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.quic.receive_datagram(data, addr, now=self.loop.time())
            self._process()
        except Exception as error:  # one connection's failure ends that connection only
            log.warning("%r: receiving failed: %r", self, error)
            self._fail(ConnectFailedError(f"QUIC connection failed: {error!r}"))
            return
        self._wake_writers()
        self.pool.capacity_freed()  # MAX_STREAMS may have raised the stream limit
        self.transmit_soon()

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable on the connected socket: nobody serves QUIC there. Envoy's
        QUIC client closes the connection itself on that write error: a *local* connection
        failure (measured: tests/conformance/proxy/http/test_http3_upstream_vs_envoy.py)."""
        log.debug("%r: %r", self, exc)
        if isinstance(exc, ConnectionRefusedError):
            self._fail(ConnectFailedError(f"connect failed: {exc}", local=True,
                                          transport_failure=f"QUIC: {exc.strerror or exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectFailedError("connection closed"))

    # --- QUIC side -----------------------------------------------------------------------------

    def _process(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, quic_events.HandshakeCompleted):
                if event.alpn_protocol != "h3" and not self.handshake.done():
                    self.handshake.set_exception(ConnectFailedError(
                        "h3 was not negotiated", transport_failure="TLS_error: ALPN"))
                elif not self.handshake.done():
                    self.handshake.set_result(None)
            elif isinstance(event, quic_events.ConnectionTerminated):
                reason = event.reason_phrase or f"error {event.error_code:#x}"
                self._fail(ConnectFailedError(f"QUIC connection closed: {reason}",
                                              transport_failure=f"QUIC: {reason}",
                                              local=self.quic.closed_locally))
                return
            else:
                for ours in self.codec.receive_quic_event(event):
                    stream = self.streams.get(getattr(ours, "stream_id", -1))
                    if stream is not None:
                        stream.deliver(ours)

    def transmit_soon(self) -> None:
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self.loop.call_soon(self.transmit)

    def transmit(self) -> None:
        self._transmit_scheduled = False
        if self.closed or self.transport is None:
            return
        for data, _addr in self.quic.datagrams_to_send(now=self.loop.time()):
            self.transport.sendto(data)
        self._rearm(self.quic.get_timer())

    def _rearm(self, when: float | None) -> None:
        """One loop timer at aioquic's next deadline, left alone when that did not move."""
        if when == self._timer_at and self._timer is not None:
            return
        self._timer_at = when
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.quic.handle_timer(now=self.loop.time())
            self._process()
            self.transmit()
        except Exception as error:  # one connection's failure ends that connection only
            log.warning("%r: timer failed: %r", self, error)
            self._fail(ConnectFailedError(f"QUIC connection failed: {error!r}"))

    def _fail(self, error: ConnectFailedError) -> None:
        """The connection is gone: the handshake fails, the streams in flight are reset."""
        if self.closed:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        if not self.handshake.done():
            self.handshake.set_exception(error)
            self.handshake.exception()  # retrieved here; the pool raises its own copy
        for stream_id, stream in list(self.streams.items()):
            stream.deliver(StreamReset(stream_id, reason=ResetReason.CONNECTION_TERMINATION))
        self._wake_writers()
        if self.transport is not None:
            self.transport.close()
        self.pool.connection_closed(self)

    def _wake_writers(self) -> None:
        waiters, self.ack_waiters = self.ack_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_acknowledged(self) -> None:
        waiter = self.loop.create_future()
        self.ack_waiters.append(waiter)
        await waiter

    # --- streams -------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        if self.closed or not self.handshake.done() or self.handshake.exception() is not None:
            return 0
        return self.codec.capacity() - len(self.unsent)

    def open_stream(self) -> Http3Stream:
        stream = Http3Stream(self.pool.host, self)
        stream.high_watermark = self.pool.buffer_limit
        self.unsent.add(stream)
        self.idle_since = None
        return stream

    def stream_done(self, stream: Http3Stream) -> None:
        if stream.stream_id is not None:
            self.streams.pop(stream.stream_id, None)
            self.codec.finished(stream.stream_id)
            self.quic.held.discard(stream.stream_id)
        self.unsent.discard(stream)
        self.transmit_soon()
        self.pool.capacity_freed()
        if not self.streams and not self.unsent and not self.closed:
            if self.pool.closed:
                self.close()
            else:
                self.idle_since = time.monotonic()
                self.pool.idle_timer.went_idle(self.idle_since)

    def close(self) -> None:
        """CONNECTION_CLOSE with H3_NO_ERROR (RFC 9114 5.2), then forget the connection."""
        if self.closed:
            return
        self.closed_by_us = True
        self.quic.close(error_code=H3_NO_ERROR)
        self.transmit()
        self._fail(ConnectFailedError("connection closed", local=True))

    def __repr__(self) -> str:
        return (f"Http3Connection({self.pool.host.address}:{self.pool.host.port} "
                f"streams={len(self.streams)} closed={self.closed})")


class Http3Stream(UpstreamStream):
    def __init__(self, host: Host, connection: Http3Connection) -> None:
        super().__init__(host, connection.loop)
        self.connection = connection
        self.stream_id: int | None = None  # client stream IDs start at 0 (RFC 9000 2.1)

    def send_head_nowait(self, head: RequestHead, *, end_stream: bool) -> bool:
        self._start(head, end_stream)
        return True

    async def send_head(self, head: RequestHead, *, end_stream: bool) -> None:
        self._start(head, end_stream)

    def _start(self, head: RequestHead, end_stream: bool) -> None:
        connection = self.connection
        connection.unsent.discard(self)
        if connection.closed:
            self.deliver(StreamReset(0, reason=ResetReason.CONNECTION_TERMINATION))
            return
        self.stream_id = connection.codec.send_request_head(head, end_stream=end_stream)
        connection.streams[self.stream_id] = self
        connection.transmit_soon()

    async def send_data(self, data: bytes, *, end_stream: bool) -> None:
        """Queue the body on the stream; past the buffer limit wait until the server has
        acknowledged some (aioquic queues without bound and keeps data until it is acked)."""
        connection, stream_id = self.connection, self.stream_id
        if stream_id is None or not connection.codec.stream_open(stream_id):
            return
        connection.codec.send_data(stream_id, data, end_stream=end_stream)
        connection.transmit_soon()
        while connection.codec.buffered(stream_id) > self.high_watermark \
                and not connection.closed and not self.finished:
            await connection.wait_acknowledged()

    async def send_trailers(self, trailers: Headers) -> None:
        if self.stream_id is not None:
            self.connection.codec.send_trailers(self.stream_id, trailers)
            self.connection.transmit_soon()

    def _pressure(self, on: bool) -> None:
        """Too much response body unread: stop raising the stream's window (and resume)."""
        if self.stream_id is None:
            return
        if on:
            self.connection.quic.held.add(self.stream_id)
        else:
            self.connection.quic.held.discard(self.stream_id)
            self.connection.transmit_soon()

    def reset(self) -> None:
        """Abandon the exchange: RESET_STREAM and STOP_SENDING, H3_REQUEST_CANCELLED."""
        if self.finished:
            return
        self.finished = True
        self.return_unread()
        if self.stream_id is not None and not self.connection.closed:
            self.connection.codec.reset(self.stream_id)
        self.connection.stream_done(self)

    def release(self) -> None:
        """The response ended; a request body still going is cut (RFC 9114 4.1: the server
        answered early, H3_NO_ERROR)."""
        if self.finished:
            return
        self.finished = True
        self.return_unread()
        stream_id = self.stream_id
        if stream_id is not None and self.connection.codec.stream_open(stream_id) \
                and not self.connection.closed:
            self.connection.codec.reset(stream_id, H3_NO_ERROR)
        self.connection.stream_done(self)


class Http3Pool(MultiplexedPool):
    connect_label = "QUIC connect"

    def __init__(self, runtime: Any, host: Host, *, connect_timeout: float,
                 tls: UpstreamTls | None, buffer_limit: int = 1024 * 1024,
                 idle_timeout: float | None = 3600.0) -> None:
        self.runtime = runtime
        self.host = host
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.buffer_limit = buffer_limit
        self.idle_timer = IdleTimer(idle_timeout, self._close_idle_since)
        self.connections: list[Http3Connection] = []
        self._connecting: asyncio.Task[Http3Connection] | None = None
        self._slot_taken_over = False
        self.closed = False
        self.breakers = PoolBreakers(runtime)
        self._capacity_waiters: list[asyncio.Future[None]] = []

    async def _stream_slot(self) -> Http3Stream:
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
                    self._connect(), name=f"QUIC connect {self.host.address}:{self.host.port}")
                self._connecting.add_done_callback(self._connect_done)
            await self._await_connect(self._connecting)
            if all(c.capacity <= 0 for c in self.connections):
                await self._wait_capacity()  # a full new connection: wait for MAX_STREAMS

    async def _connect(self) -> Http3Connection:
        """A connection whose handshake completed within connect_timeout; the outcome is
        recorded on the cluster runtime (upstream_cx_* stats, outlier detection)."""
        loop = asyncio.get_running_loop()
        connection: Http3Connection | None = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                _transport, connection = await loop.create_datagram_endpoint(
                    lambda: Http3Connection(self),
                    remote_addr=(self.host.address, self.host.port))
                await connection.handshake
        except TimeoutError:
            self._abandon(connection)
            self.runtime.connection_failed(self.host, timeout=True)
            raise ConnectFailedError("connect timeout", timeout=True) from None
        except ConnectFailedError:
            self._abandon(connection)
            self.runtime.connection_failed(self.host)
            raise
        except OSError as error:
            self._abandon(connection)
            self.runtime.connection_failed(self.host)
            raise ConnectFailedError(f"connect failed: {error}", transport_failure=(
                f"delayed_connect_error: {error.strerror or error}")) from error
        except BaseException:
            self._abandon(connection)
            raise
        connection.opened = True
        self.runtime.connection_opened(self.host)
        self._slot_taken_over = True
        self.connections.append(connection)
        return connection

    @staticmethod
    def _abandon(connection: Http3Connection | None) -> None:
        if connection is not None and not connection.closed:
            connection.closed = True  # not opened: nothing to count when it goes
            if connection._timer is not None:
                connection._timer.cancel()
            if connection.transport is not None:
                connection.transport.close()

    def connection_closed(self, connection: Http3Connection) -> None:
        if connection not in self.connections:
            return  # never opened (_abandon), or already counted
        self.connections.remove(connection)
        self.breakers.connection_gone()
        self.runtime.connection_closed(self.host, local=connection.closed_by_us,
                                       with_active_request=bool(connection.streams))
        self.capacity_freed()

    def close(self) -> None:
        self.closed = True
        self.idle_timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        for connection in list(self.connections):
            if not connection.streams:
                connection.close()
