"""One downstream HTTP/3 connection (proxy.http.server_connection has what every protocol
shares): the same streams, filters, routes, retries, tracing and access logs as HTTP/1.1 and
HTTP/2, over aioquic (proxy.codec.http3).

Its transport is a `QuicLink`, the QUIC session that feeds it (proxy.listeners.quic): the
session hands over each QUIC event (`receive_quic`) and sends the connection's datagrams when
it flushes (`transmit`). Streams run concurrently, as in HTTP/2. What a response writes waits
while aioquic holds more than the connection's buffer limit unacknowledged for the stream
(`per_connection_buffer_limit_bytes`), so a slow client bounds what we buffer. A stream ends
by RESET_STREAM / STOP_SENDING, the connection by CONNECTION_CLOSE (RFC 9114 4.1.1, 5.2).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast

from aioquic.quic.events import QuicEvent, StopSendingReceived
from aioquic.quic.events import StreamReset as QuicStreamReset

from proxy.codec.events import StreamReset
from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, ResponseHead
from proxy.codec.http3 import (
    H3_INTERNAL_ERROR,
    H3_NO_ERROR,
    H3_REQUEST_CANCELLED,
    Http3ServerCodec,
)
from proxy.http.active_stream import ActiveStream
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.server_connection import ServerConnection


class QuicLink(Protocol):
    """What an HTTP/3 connection asks of its QUIC session (transport-shaped, so that the
    shared ServerConnection code can close and test it as it does a TCP transport)."""

    quic: Any  # aioquic QuicConnection
    closed: asyncio.Future[None]  # resolves when the QUIC connection is gone
    version_name: str  # Envoy's name of the QUIC version: "rfc_v1", "rfc_v2"
    closed_locally: bool  # we closed it (or it idled out), not the client

    def transmit(self) -> None: ...
    def transmit_soon(self) -> None: ...
    def is_closing(self) -> bool: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def resume_reading(self) -> None: ...


class Http3ServerConnection(ServerConnection):
    codec: Http3ServerCodec

    def __init__(self, manager: HttpManager, info: ConnectionInfo, link: QuicLink,
                 loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(manager, info, cast(asyncio.Transport, link), loop, WriteFlow())
        self.link = link
        self.codec = Http3ServerCodec(link.quic, scheme=info.scheme)
        self.buffer_limit = info.buffer_limit
        self.ack_waiters: list[asyncio.Future[None]] = []
        self._close_when_acked = False
        self._reset_by_client: set[int] = set()

    # --- fed by the QUIC session ---------------------------------------------------------------

    def receive_quic(self, event: QuicEvent) -> None:
        if isinstance(event, QuicStreamReset | StopSendingReceived):
            self._count_global("http3.rx_reset")  # Envoy counts both frames
        for event_out in self.codec.receive_quic_event(event):
            if type(event_out) is StreamReset and event_out.stream_id in self.streams:
                self._reset_by_client.add(event_out.stream_id)
                self.manager.count("downstream_rq_rx_reset")
            self._on_event(event_out)
        self.flush()

    def _count_global(self, name: str) -> None:
        if self.manager.stats is not None:
            self.manager.stats.counter(name).inc()

    def stream_arrived(self, stream: ActiveStream) -> None:
        self.manager.count("downstream_rq_http3_total")
        super().stream_arrived(stream)

    def acknowledged(self) -> None:
        """The session received datagrams (ACKs among them): writers may go on."""
        waiters, self.ack_waiters = self.ack_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._close_when_acked and not self.codec.unacknowledged():
            self._close_when_acked = False
            self._connection_close()

    # --- writing (the streams' StreamOwner calls) ----------------------------------------------

    def flush(self) -> None:
        """Queue a transmit of the session (one per loop iteration, shared by every stream
        and by the datagrams received in it)."""
        self.link.transmit_soon()

    def flush_now(self) -> None:
        if not self.link.is_closing():
            self.link.transmit()

    def write_head(self, stream: ActiveStream, head: ResponseHead, *, end_stream: bool) -> None:
        if not stream.body.ended:
            self.answered_early()
        if self.codec.stream_open(stream.stream_id):
            self.codec.send_response_head(stream.stream_id, head, end_stream=end_stream)
            self.flush()

    def write_data_nowait(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> bool:
        codec = self.codec
        if not codec.stream_open(stream.stream_id):
            return True  # reset meanwhile: nothing more goes out
        if codec.buffered(stream.stream_id) > self.buffer_limit:
            return False
        codec.send_data(stream.stream_id, data, end_stream=end_stream)
        self.flush()
        return True

    async def write_data(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> None:
        """write_data_nowait(), else once aioquic's queue for the stream went down."""
        while not self.write_data_nowait(stream, data, end_stream=end_stream):
            if self.transport_gone():
                return
            waiter = self.loop.create_future()
            self.ack_waiters.append(waiter)
            await waiter

    async def write_trailers(self, stream: ActiveStream, trailers: Headers) -> None:
        if self.codec.stream_open(stream.stream_id):
            self.codec.send_trailers(stream.stream_id, trailers)
            self.flush()

    def reset_stream(self, stream: ActiveStream) -> None:
        self.flush_now()  # what was queued for the stream goes out first
        self.codec.reset(stream.stream_id, H3_INTERNAL_ERROR,
                         stop_receiving=not stream.body.ended)
        self.flush()

    def body_pressure(self, stream_id: int, on: bool) -> None:
        """A request body over the buffer limit: its QUIC window stops growing until the
        stream drained it (proxy.codec.http3.FlowControlledQuicConnection)."""
        self.codec.hold_window(stream_id, on)
        if not on:
            self.flush()  # the window update goes out

    def close_after_response(self) -> None:
        # HTTP/3's "connection: close" is GOAWAY (RFC 9114 5.2), as HTTP/2's.
        if not self.closing:
            self.codec.goaway()
            self.flush()
        self.closing = True

    # --- streams end ---------------------------------------------------------------------------

    def stream_ended(self, stream: ActiveStream) -> None:
        if stream.stream_id in self._reset_by_client:
            self._reset_by_client.discard(stream.stream_id)
            _logged_as_envoy_logs_a_reset(stream)
        codec = self.codec
        if not stream.complete:
            codec.reset(stream.stream_id, H3_REQUEST_CANCELLED,
                        stop_receiving=not stream.body.ended)
            self.flush()
        elif not stream.body.ended:
            # RFC 9114 4.1: a complete response before the request's end asks the client
            # to stop sending with STOP_SENDING H3_NO_ERROR.
            codec.reset(stream.stream_id, H3_NO_ERROR)
            self.flush()
        codec.finished(stream.stream_id)

    # --- the connection's ends -----------------------------------------------------------------

    def lost(self) -> None:
        super().lost()
        self.acknowledged()  # writers waiting see the transport gone

    def idle_timed_out(self) -> None:
        self.codec.close(H3_NO_ERROR, "idle timeout")

    def request_headers_timed_out(self) -> None:  # never armed: refused for HTTP/3 chains
        raise AssertionError("request_headers_timeout on HTTP/3")

    def start_draining(self) -> None:
        """The listener drains: GOAWAY, the streams in flight finish, then the connection
        closes (Envoy's drain for HTTP/3 sends GOAWAY too)."""
        self.closing = True
        self.codec.goaway()
        self.flush()
        if not self.streams:
            self.close()

    def close(self, *, delayed: bool = True) -> None:
        """CONNECTION_CLOSE H3_NO_ERROR once the client acknowledged every response byte
        (after a close aioquic retransmits nothing, so a lost packet would cut the last
        response short). QUIC needs no delayed close: a closing endpoint keeps answering
        with CONNECTION_CLOSE (RFC 9000 10.2.1). The idle timeouts bound the wait."""
        if self.link.is_closing():
            return
        self.flush_now()
        if self.codec.unacknowledged():
            self._close_when_acked = True
            return
        self._connection_close()

    def _connection_close(self) -> None:
        if self.link.is_closing():
            return
        self.codec.close(H3_NO_ERROR)
        self.flush_now()
        self.link.close()

    def shutdown(self) -> None:
        if not self.link.is_closing():
            self.codec.close(H3_NO_ERROR)
            self.flush_now()
        self.link.abort()


def _logged_as_envoy_logs_a_reset(stream: ActiveStream) -> None:
    """A stream the client reset (RESET_STREAM): Envoy 1.40's HCM logs no response flag and no
    details for it over HTTP/3 (onResetStream sets neither for a remote reset; measured in
    tests/conformance/proxy/http/test_http3_vs_envoy.py), where our cancelled stream task
    would say DC / downstream_remote_disconnect, which Envoy keeps for a closed connection."""
    info = stream.info
    if "DC" in info.response_flags:
        info.response_flags.remove("DC")
    if info.response_details == "downstream_remote_disconnect":
        info.response_details = ""
