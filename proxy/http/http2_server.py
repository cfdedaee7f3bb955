"""One downstream HTTP/2 connection (proxy.http.server_connection has what HTTP/1.1 shares).

Streams run concurrently. The peer's flow-control windows bound what a response writes
(send_flow_controlled waits for WINDOW_UPDATE) and a request body's window comes back as the
stream consumes it, so a body never stops the socket. A stream ends by RST_STREAM, a
connection by GOAWAY (RFC 9113 6.4, 6.8).
"""

from __future__ import annotations

import asyncio

from proxy.codec.events import DataReceived, Event, ProtocolFailed
from proxy.codec.flow import WriteFlow, send_flow_controlled
from proxy.codec.headers import Headers, ResponseHead
from proxy.codec.http2 import ErrorCodes, Http2Codec
from proxy.http.active_stream import ActiveStream
from proxy.http.header_timeout import Http2HeadersDeadline, header_timeout_reply
from proxy.http.local_reply import render_local_reply
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.server_connection import ServerConnection
from proxy.http.upstream_reset import LATE_RESET


class Http2ServerConnection(ServerConnection):
    codec_writes = True
    def __init__(self, manager: HttpManager, info: ConnectionInfo,
                 transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 flow: WriteFlow) -> None:
        super().__init__(manager, info, transport, loop, flow)
        s = manager.settings
        self.codec = codec = Http2Codec(
            client_side=False, scheme=info.scheme,
            max_concurrent_streams=min(s.max_concurrent_streams, 2**31 - 1),
            initial_window_size=s.initial_stream_window_size,
            connection_window_size=s.initial_connection_window_size,
            header_table_size=s.hpack_table_size, max_header_list_size=s.max_header_bytes,
            max_headers_count=s.max_headers_count, enable_connect_protocol=s.allow_connect)
        codec.initiate()  # its SETTINGS go out with the answer to the client's bytes
        self.window_waiters: list[asyncio.Future[None]] = []
        if s.request_headers_timeout:
            self.headers_deadline = Http2HeadersDeadline(s.request_headers_timeout)

    # --- reading -------------------------------------------------------------------------------

    def watch_request_head(self, data: bytes) -> None:
        """request_headers_timeout runs from the HEADERS frame opening a header block."""
        deadline = self.headers_deadline
        assert isinstance(deadline, Http2HeadersDeadline)
        if deadline.feed(data, self.loop.time()):
            self.arm_headers_deadline()

    def stream_gone(self, event: Event) -> None:
        if type(event) is DataReceived:  # its window comes back all the same
            self.codec.acknowledge(event.stream_id,  # type: ignore[attr-defined]
                                   event.flow_controlled_length)  # type: ignore[attr-defined]

    def window_opened(self) -> None:
        waiters, self.window_waiters = self.window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def protocol_failed(self, event: ProtocolFailed) -> None:
        self.close()  # flushes the GOAWAY first (none after a bad preface)

    # --- writing (the streams' StreamOwner calls) ----------------------------------------------

    def write_head(self, stream: ActiveStream, head: ResponseHead, *, end_stream: bool) -> None:
        if not stream.body.ended:
            self.answered_early()
        if self.codec.stream_open(stream.stream_id):
            self.codec.send_response_head(stream.stream_id, head, end_stream=end_stream)
            self.flush()

    def write_data_nowait(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> bool:
        codec = self.codec
        if len(data) > codec.sendable(stream.stream_id):
            return False
        codec.send_data(stream.stream_id, data, end_stream=end_stream)
        self.flush()
        return True

    async def write_data(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> None:
        """write_data_nowait(), else send as the peer's windows open."""
        codec = self.codec
        if not self.write_data_nowait(stream, data, end_stream=end_stream) \
                and codec.sendable(stream.stream_id) >= 0:
            await send_flow_controlled(codec, stream.stream_id, data, end_stream,
                                       self.flush, self._wait_window, self.transport_gone)
        if self.flow.paused:
            await self.flow.drained()

    async def _wait_window(self) -> None:
        waiter = self.loop.create_future()
        self.window_waiters.append(waiter)
        await waiter

    async def write_trailers(self, stream: ActiveStream, trailers: Headers) -> None:
        if self.codec.stream_open(stream.stream_id):
            self.codec.send_trailers(stream.stream_id, trailers)
            self.flush()

    def reset_stream(self, stream: ActiveStream) -> None:
        # What was queued for the stream (its response head) goes out first: libnghttp2
        # would otherwise drop it for the RST_STREAM, and Envoy sends both.
        self.flush_now()
        self.codec.reset(stream.stream_id, _reset_code(stream))
        self.flush()

    def close_after_response(self) -> None:
        if not self.closing:
            self.codec.shutdown_notice()  # Envoy's HTTP/2 way of "connection: close"
            self.flush()
        self.closing = True

    # --- streams end, flow control -------------------------------------------------------------

    def stream_ended(self, stream: ActiveStream) -> None:
        if not stream.complete:
            self.codec.reset(stream.stream_id, ErrorCodes.CANCEL)
            self.flush()
        elif not stream.body.ended:
            # RFC 9113 8.1: the response is complete before the request; RST_STREAM NO_ERROR
            # asks the client to stop sending it, as Envoy does. The response goes out first
            # (libnghttp2 would otherwise put the RST_STREAM ahead of it).
            self.flush_now()
            self.codec.reset(stream.stream_id, ErrorCodes.NO_ERROR)
            self.flush()

    def body_consumed(self, stream_id: int, length: int) -> None:
        self.codec.acknowledge(stream_id, length)
        self.flush()

    # --- the connection's ends -----------------------------------------------------------------

    def lost(self) -> None:
        super().lost()
        self.window_opened()  # writers waiting for a window see the transport gone

    def idle_timed_out(self) -> None:
        self.codec.close(ErrorCodes.NO_ERROR)

    def request_headers_timed_out(self) -> None:
        """Envoy 1.40: 408 "request header timeout" on the stream whose header block did not
        end in time, then RST_STREAM NO_ERROR; the connection stays (measured in
        tests/conformance/proxy/http/test_request_timeouts_vs_envoy.py)."""
        record = self.header_timeout_record("HTTP/2")
        deadline = self.headers_deadline
        assert isinstance(deadline, Http2HeadersDeadline)
        stream_id = deadline.expire()
        reply = header_timeout_reply()
        reply.close_connection = False
        head, body = render_local_reply(reply, None)
        self.server_and_date(head)
        self.codec.answer_unopened(stream_id, head, body)
        self.flush()
        if not self.streams:
            self.arm_idle_timer()
        record.info.response_code = head.status
        record.info.bytes_sent = len(body)
        self.log_stream(record)  # counts downstream_rq_4xx

    def start_draining(self) -> None:
        """Envoy draining: GOAWAY NO_ERROR, the streams in flight finish."""
        self.closing = True
        self.codec.graceful_goaway()
        self.flush()
        if not self.streams:
            self.close()

    def shutdown(self) -> None:
        self.codec.close()
        self.flush_now()
        self.transport.abort()


def _reset_code(stream: ActiveStream) -> int:
    """The RST_STREAM code for a stream we reset. A tunnel (upgrade or CONNECT) whose upstream
    went away (reset or closed) while the client still sends gets CONNECT_ERROR (RFC 9113
    8.5: the TCP connection failed); anything else INTERNAL_ERROR. Both as Envoy 1.40 does,
    measured in tests/conformance/proxy/http/test_websocket_h2_vs_envoy.py."""
    info = stream.info
    if info.request.upgrade and not stream.body.ended \
            and info.response_details.startswith(LATE_RESET):
        return ErrorCodes.CONNECT_ERROR
    return ErrorCodes.INTERNAL_ERROR
