"""One downstream HTTP/1.1 connection (proxy.http.server_connection has what HTTP/2 shares).

Streams run one at a time in arrival order: a pipelined request waits in `queue` until the
responses before it are out (RFC 9112 9.3.2). A request body queued past the stream's limit
stops reading the socket (there is no window to close). HTTP/1.1 has no stream reset: a
response that cannot finish ends the connection.
"""

from __future__ import annotations

import asyncio
from collections import deque

from proxy.codec.events import ProtocolFailed
from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, ResponseHead
from proxy.codec.http1 import Http1ServerCodec
from proxy.http.active_stream import ActiveStream
from proxy.http.filter import LocalReply
from proxy.http.header_timeout import HeadersDeadline, header_timeout_reply
from proxy.http.local_reply import render_local_reply
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.server_connection import ServerConnection

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Http1ServerConnection(ServerConnection):
    def __init__(self, manager: HttpManager, info: ConnectionInfo,
                 transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 flow: WriteFlow) -> None:
        super().__init__(manager, info, transport, loop, flow)
        s = manager.settings
        self.codec = Http1ServerCodec(scheme=info.scheme, max_header_bytes=s.max_header_bytes,
                                      max_headers_count=s.max_headers_count,
                                      accept_http_10=s.accept_http_10,
                                      allow_absolute_url=s.allow_absolute_url,
                                      default_host_for_http_10=s.default_host_for_http_10,
                                      enable_trailers=s.http1_enable_trailers)
        self.queue: deque[ActiveStream] = deque()  # the stream answering, then the pipelined
        self._pressured: set[int] = set()
        if s.request_headers_timeout:
            self.headers_deadline = HeadersDeadline(s.request_headers_timeout)

    # --- reading -------------------------------------------------------------------------------

    def watch_request_head(self, data: bytes) -> None:
        """request_headers_timeout runs from a head's first byte."""
        deadline = self.headers_deadline
        assert isinstance(deadline, HeadersDeadline)
        if deadline.observe(self.codec.receiving_head, self.loop.time()):
            self.arm_headers_deadline()

    def stream_arrived(self, stream: ActiveStream) -> None:
        queue = self.queue
        queue.append(stream)
        if len(queue) == 1:  # else pipelined: answered after the ones before it
            task = self.loop.create_task(stream.run())  # spawn() inline
            stream.task = task
            self.tasks.add(task)

    def continue_100(self) -> None:
        self.write(_CONTINUE)

    def protocol_failed(self, event: ProtocolFailed) -> None:
        """Answer with the status (400, 431, 426, 501) and close (RFC 9112 9.6), unless a
        response already started, in which case closing is all we can do."""
        answering = not any(stream.head_sent for stream in self.queue)
        for stream in list(self.queue):
            stream.complete = True  # nothing more is written for it
            stream.body.abort()
            if stream.task is not None:
                stream.task.cancel()
        if answering:
            head, body = render_local_reply(LocalReply(event.status, _protocol_text(event)),
                                            None)
            self.codec.close_after_response = True
            self.write(self.codec.encode_response_head(head, end_stream=not body) + body)
        self.close()

    # --- writing (the streams' StreamOwner calls) ----------------------------------------------

    def write_head(self, stream: ActiveStream, head: ResponseHead, *, end_stream: bool) -> None:
        if not stream.body.ended:
            # Envoy will not wait for the rest of the request: the response says
            # `connection: close` (conn_manager_impl encodeHeaders).
            self.answered_early()
            self.codec.close_after_response = True
        self.write(self.codec.encode_response_head(head, end_stream=end_stream))
        if end_stream:
            self._response_done(stream)

    def write_data_nowait(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> bool:
        out = self.codec.encode_data(data, end_stream=end_stream)
        if out:
            self.write(out)
        if end_stream:
            self._response_done(stream)
        return True

    async def write_data(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> None:
        self.write_data_nowait(stream, data, end_stream=end_stream)
        if self.flow.paused:
            await self.flow.drained()

    async def write_trailers(self, stream: ActiveStream, trailers: Headers) -> None:
        # In the last chunk when http_protocol_options.enable_trailers (and the response is
        # chunked), else just the end of the body, as Envoy.
        out = self.codec.encode_trailers(trailers)
        if out:
            self.write(out)
        self._response_done(stream)
        if self.flow.paused:
            await self.flow.drained()

    def reset_stream(self, stream: ActiveStream) -> None:
        self.close()  # no stream reset in HTTP/1.1: the connection goes

    def close_after_response(self) -> None:
        self.codec.close_after_response = True

    def _response_done(self, stream: ActiveStream) -> None:
        codec = self.codec
        codec.response_complete()
        if codec.close_after_response or not stream.body.ended:
            # Envoy (conn_manager_impl doEndStream) skips the delayed close when a proxied
            # response ends a request that was read to its end and asked to close: no race
            # to guard against. Its local replies and error closes keep the delay (measured
            # against Envoy 1.40 in tests/conformance/proxy/http/test_delayed_close_vs_envoy.py).
            at_once = (codec.client_asked_close and stream.body.ended
                       and stream.info.response_details == "via_upstream")
            self.close(delayed=not at_once)  # also when the request was not read to its end

    # --- streams end, flow control -------------------------------------------------------------

    def stream_ended(self, stream: ActiveStream) -> None:
        self._pressured.discard(stream.stream_id)
        queue = self.queue
        if queue and queue[0] is stream:
            queue.popleft()
        if not stream.complete:
            self.close()
        elif queue and not self.transport_gone():
            self.spawn(queue[0])
        self._update_reading()

    def body_pressure(self, stream_id: int, on: bool) -> None:
        if on:
            self._pressured.add(stream_id)
        else:
            self._pressured.discard(stream_id)
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport_gone():
            return
        if self._pressured:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # --- the connection's ends -----------------------------------------------------------------

    def request_headers_timed_out(self) -> None:
        """Envoy 1.40: 408 "request header timeout" and close."""
        record = self.header_timeout_record("HTTP/1.1")
        if self.queue:
            self.close()  # a pipelined response is still being written: only closing is left
            self.log_stream(record)
            return
        head, body = render_local_reply(header_timeout_reply(), None)
        record.info.response_code = head.status
        record.info.bytes_sent = len(body)
        self.server_and_date(head)
        self.codec.close_after_response = True
        self.write(self.codec.encode_response_head(head, end_stream=not body) + body)
        self.close()
        self.log_stream(record)  # counts downstream_rq_4xx

    def start_draining(self) -> None:
        """Envoy draining: HTTP/1.1 answers with `connection: close`."""
        self.closing = True
        self.codec.close_after_response = True
        if not self.streams:
            self.close()


def _protocol_text(event: ProtocolFailed) -> str:
    return {426: "", 431: ""}.get(event.status, "Bad Request")
