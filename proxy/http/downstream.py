"""The asyncio adapter of one downstream HTTP connection: bytes <-> codec <-> streams.

Thin by design: it feeds received bytes to the codec, turns events into `ActiveStream`
calls, writes what the codec produces, and owns the stream tasks (cancelled on close) and the
connection timers (idle_timeout, request_headers_timeout for HTTP/1.1 heads and HTTP/2 header
blocks: proxy.http.header_timeout). HTTP/1.1 streams run one at a time
in arrival order (pipelining safe); HTTP/2 streams run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from proxy.codec.events import (
    ConnectionEnded,
    DataReceived,
    Event,
    ProtocolFailed,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    TunnelEstablished,
    WindowOpened,
)
from proxy.codec.flow import WriteFlow, send_flow_controlled
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http1 import Http1ServerCodec
from proxy.codec.http2 import PREFACE, ErrorCodes, Http2Codec
from proxy.http.active_stream import ActiveStream, http_date
from proxy.http.filter import FilterMaker, LocalReply
from proxy.http.header_timeout import (
    HeadersDeadline,
    Http2HeadersDeadline,
    header_timeout_reply,
)
from proxy.http.local_reply import render_local_reply
from proxy.http.router import Router
from proxy.http.settings import HcmSettings
from proxy.http.stream_timers import StreamTimers
from proxy.http.upstream_reset import LATE_RESET
from proxy.model.route import RouteConfig
from proxy.stats import Counter

log = logging.getLogger(__name__)


class HttpConnectionHandler(asyncio.Protocol):
    def __init__(self, *, settings: HcmSettings, route_config: Callable[[], RouteConfig | None],
                 filter_makers: list[FilterMaker], router: Router,
                 remote_address: tuple[str, int], local_address: tuple[str, int],
                 connection_id: int, tls: bool, alpn: tuple[str, ...] = (),
                 stats: Any = None, on_stream_log: Callable[[ActiveStream], None] | None = None,
                 tracer: Any = None, buffer_limit: int = 1024 * 1024) -> None:
        self.settings = settings
        self.route_config = route_config
        self.filter_makers = filter_makers
        self.router = router
        self.remote_address = remote_address
        self.local_address = local_address
        self.connection_id = connection_id
        self.filter_state: dict[Any, Any] = {}  # HttpStream.connection_state
        self.scheme = "https" if tls else "http"
        self.stats = stats
        self.tracer = tracer  # proxy.observability Tracer, or None
        # The listener's per_connection_buffer_limit_bytes: request bytes one stream may queue
        # before we stop reading the socket (HTTP/1.1) or stop opening the window (HTTP/2).
        self.buffer_limit = buffer_limit
        self._on_stream_log = on_stream_log
        self.transport: asyncio.Transport | None = None
        self.codec: Http1ServerCodec | Http2Codec | None = None
        self.streams: dict[int, ActiveStream] = {}
        self.h1_queue: deque[ActiveStream] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.flow = WriteFlow()
        self.window_waiters: list[asyncio.Future[None]] = []
        self._loop = self.loop = asyncio.get_running_loop()
        self.timers = StreamTimers(self._loop)  # the streams' idle timeouts and deadlines
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._buffer = b""
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._counters: dict[str, Counter] = {}
        self._pressured: set[int] = set()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._delayed_close: asyncio.TimerHandle | None = None
        # request_headers_timeout (None when not configured: no per-read work)
        self._headers_deadline: HeadersDeadline | Http2HeadersDeadline | None = None

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ssl_object = transport.get_extra_info("ssl_object")
        negotiated = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        codec_type = self.settings.codec_type
        if codec_type == "HTTP2" or (codec_type == "AUTO" and negotiated == "h2"):
            self._start_http2()  # its SETTINGS go out with the answer to the client's bytes
        elif codec_type == "HTTP1" or negotiated == "http/1.1":
            self._start_http1()
        self._arm_timer(self.settings.idle_timeout)  # request_headers_timeout: at a first byte

    def _start_http1(self) -> None:
        s = self.settings
        if s.request_headers_timeout:
            self._headers_deadline = HeadersDeadline(s.request_headers_timeout)
        self.codec = Http1ServerCodec(scheme=self.scheme, max_header_bytes=s.max_header_bytes,
                                      max_headers_count=s.max_headers_count,
                                      accept_http_10=s.accept_http_10,
                                      allow_absolute_url=s.allow_absolute_url,
                                      default_host_for_http_10=s.default_host_for_http_10,
                                      enable_trailers=s.http1_enable_trailers)

    def _start_http2(self) -> None:
        s = self.settings
        codec = Http2Codec(client_side=False, scheme=self.scheme,
                           max_concurrent_streams=min(s.max_concurrent_streams, 2**31 - 1),
                           initial_window_size=s.initial_stream_window_size,
                           connection_window_size=s.initial_connection_window_size,
                           header_table_size=s.hpack_table_size,
                           max_header_list_size=s.max_header_bytes,
                           max_headers_count=s.max_headers_count,
                           enable_connect_protocol=s.allow_connect)
        codec.initiate()
        self.codec = codec
        if s.request_headers_timeout:
            self._headers_deadline = Http2HeadersDeadline(s.request_headers_timeout)

    def data_received(self, data: bytes) -> None:
        if self._delayed_close is not None:
            return  # closing: what the client still sends is dropped (delayed close)
        if self.codec is None:
            # codec_type AUTO without ALPN: HTTP/2 prior knowledge starts with the preface.
            self._buffer += data
            if len(self._buffer) < len(PREFACE) and PREFACE.startswith(self._buffer):
                return
            data, self._buffer = self._buffer, b""
            self._start_http2() if data.startswith(PREFACE) else self._start_http1()
        assert self.codec is not None
        for event in self.codec.receive_data(data):
            self._on_event(event)
        if self._headers_deadline is not None:
            self._watch_request_head(data)
        self._flush()

    def _watch_request_head(self, data: bytes) -> None:
        """request_headers_timeout: arm the connection timer at a head's first byte (HTTP/1.1)
        or when a HEADERS frame opens a stream's header block (HTTP/2)."""
        deadline = self._headers_deadline
        now = self._loop.time()
        if isinstance(deadline, Http2HeadersDeadline):
            started = deadline.feed(data, now)
        else:
            assert deadline is not None and isinstance(self.codec, Http1ServerCodec)
            started = deadline.observe(self.codec.receiving_head, now)
        if started:
            self._arm_timer(deadline.timeout)

    def eof_received(self) -> bool | None:
        if self._delayed_close is not None:
            self._delayed_close.cancel()  # the client closed first, as the delay hoped
            self._delayed_close = None
            return None
        # The client's FIN ends the connection, streams in flight included (they end with DC,
        # downstream_remote_disconnect): Envoy's HTTP connection manager does not half-close,
        # an HTTP/1.1 client still awaiting a response included (measured against Envoy 1.40
        # in tests/conformance/http/test_upstream_faults_vs_envoy.py), nor a tunnel
        # (tests/conformance/http/test_websocket_h2_vs_envoy.py).
        for stream in list(self.streams.values()):
            if not stream.body.ended:
                stream.body.abort()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._delayed_close is not None:
            self._delayed_close.cancel()
            self._delayed_close = None
        self.flow.connection_lost()
        self._cancel_timer()
        self.timers.close()
        for stream in list(self.streams.values()):
            stream.body.abort()
        for task in list(self.tasks):
            task.cancel()
        self._wake_writers()
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    # --- events --------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Events are final classes: dispatch on the exact type, the frequent ones first.
        kind = type(event)
        if kind is RequestReceived:
            self._on_request(event)  # type: ignore[arg-type]
            return
        if kind is StreamEnded or kind is DataReceived or kind is TrailersReceived \
                or kind is StreamReset or kind is TunnelEstablished:
            self._on_stream_event(event)
            return
        if kind is WindowOpened:
            self._wake_writers()
        elif kind is ProtocolFailed:
            self._on_protocol_failure(event)  # type: ignore[arg-type]
        elif kind is ConnectionEnded:
            self._closing = True

    def _on_stream_event(self, event: Event) -> None:
        stream = self.streams.get(event.stream_id)  # type: ignore[union-attr]
        kind = type(event)
        if stream is None:
            if kind is DataReceived and isinstance(self.codec, Http2Codec):
                self.codec.acknowledge(event.stream_id,  # type: ignore[union-attr]
                                       event.flow_controlled_length)  # type: ignore[union-attr]
            return
        if kind is StreamEnded:
            stream.body.end(stream.body.trailers)
        elif kind is DataReceived or kind is TunnelEstablished:
            length = event.flow_controlled_length if kind is DataReceived else 0  # type: ignore[union-attr]
            if event.data or length:  # type: ignore[union-attr]
                stream.body.push(event.data, length)  # type: ignore[union-attr]
        elif kind is TrailersReceived:
            stream.body.trailers = event.trailers  # type: ignore[union-attr]
        elif kind is StreamReset:
            stream.body.abort()
            if stream.task is not None:
                stream.task.cancel()

    def _on_request(self, event: RequestReceived) -> None:
        self._arm_timer(None)
        head = event.head
        stream = ActiveStream(self, event.stream_id, head)
        self.streams[event.stream_id] = stream
        self.count_stat("downstream_rq_total")
        if event.end_stream:
            stream.body.end()
        expect = head.headers.get("expect")
        if expect is not None and expect.lower() == "100-continue":
            # Envoy answers 100-continue itself unless proxy_100_continue (off by default).
            head.headers.remove("expect")
            if isinstance(self.codec, Http1ServerCodec) and self.transport is not None:
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if isinstance(self.codec, Http1ServerCodec) and len(self.h1_queue) > 0:
            self.h1_queue.append(stream)  # pipelined: answered after the ones before it
            return
        if isinstance(self.codec, Http1ServerCodec):
            self.h1_queue.append(stream)
        self._spawn(stream)

    def _spawn(self, stream: ActiveStream) -> None:
        task = self._loop.create_task(stream.run())
        stream.task = task
        self.tasks.add(task)  # discarded by stream_finished (no done callback per request)

    def _on_protocol_failure(self, event: ProtocolFailed) -> None:
        """A connection-level codec error: Envoy counts downstream_cx_protocol_error for
        both codecs and logs it at debug; so do we (a flood of junk connections must not
        flood the log)."""
        self.count_stat("downstream_cx_protocol_error")
        log.debug("connection %d: %s", self.connection_id, event.reason)
        if isinstance(self.codec, Http2Codec):
            self._close()  # flushes the GOAWAY first (none after a bad preface)
            return
        # HTTP/1.1: answer with the status (400, 431, 426, 501) and close (RFC 9112 9.6),
        # unless a response already started, in which case closing is all we can do.
        answering = self.transport is not None and not any(
            stream.head_sent for stream in self.h1_queue)
        for stream in list(self.h1_queue):
            stream.complete = True  # nothing more is written for it
            stream.body.abort()
            if stream.task is not None:
                stream.task.cancel()
        if answering and self.transport is not None:
            head, body = render_local_reply(LocalReply(event.status, _protocol_text(event)),
                                            None)
            assert isinstance(self.codec, Http1ServerCodec)
            self.codec.close_after_response = True
            self._write(self.codec.encode_response_head(head, end_stream=not body) + body)
        self._close()

    # --- writing (called by ActiveStream) ------------------------------------------------------

    def write_head(self, stream: ActiveStream, head: ResponseHead, *, end_stream: bool) -> None:
        """Queue the response head (the caller awaits `flow.drained()` when `flow.paused`)."""
        codec = self.codec
        if not stream.body.ended:
            self._answer_before_request_end()
        if isinstance(codec, Http2Codec):
            if codec.stream_open(stream.stream_id):
                codec.send_response_head(stream.stream_id, head, end_stream=end_stream)
                self._flush()
        elif codec is not None and self.transport is not None:
            self._write(codec.encode_response_head(head, end_stream=end_stream))
            if end_stream:
                self._h1_response_done(stream)

    def _answer_before_request_end(self) -> None:
        """A response starts before its request ended. Envoy (conn_manager_impl encodeHeaders)
        counts downstream_rq_response_before_rq_complete and, on HTTP/1.1, will not wait for
        the rest of the request: the response says `connection: close`."""
        self.count_stat("downstream_rq_response_before_rq_complete")
        if isinstance(self.codec, Http1ServerCodec):
            self.codec.close_after_response = True

    def write_data_nowait(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> bool:
        """Queue DATA when that needs no waiting for windows: True when done (the caller still
        awaits `flow.drained()` when `flow.paused`); False: use write_data()."""
        codec = self.codec
        if isinstance(codec, Http2Codec):
            if self.transport is None or len(data) > codec.sendable(stream.stream_id):
                return False
            codec.send_data(stream.stream_id, data, end_stream=end_stream)
            self._flush()
            return True
        if codec is None or self.transport is None:
            return False
        out = codec.encode_data(data, end_stream=end_stream)
        if out:
            self._write(out)
        if end_stream:
            self._h1_response_done(stream)
        return True

    async def write_data(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> None:
        """write_data_nowait(), else (HTTP/2 beyond the peer's windows) send as the windows
        open."""
        if not self.write_data_nowait(stream, data, end_stream=end_stream):
            codec = self.codec
            if isinstance(codec, Http2Codec) and codec.sendable(stream.stream_id) >= 0:
                await send_flow_controlled(codec, stream.stream_id, data, end_stream,
                                           self._flush, self._wait_window,
                                           self._transport_gone)
        if self.flow.paused:
            await self.flow.drained()

    async def write_trailers(self, stream: ActiveStream, trailers: Headers) -> None:
        codec = self.codec
        if isinstance(codec, Http2Codec):
            if codec.stream_open(stream.stream_id):
                codec.send_trailers(stream.stream_id, trailers)
                self._flush()
        elif codec is not None and self.transport is not None:
            # HTTP/1.1: in the last chunk when http_protocol_options.enable_trailers (and the
            # response is chunked), else just the end of the body, as Envoy.
            out = codec.encode_trailers(trailers)
            if out:
                self._write(out)
            self._h1_response_done(stream)
            if self.flow.paused:
                await self.flow.drained()

    def reset_stream(self, stream: ActiveStream) -> None:
        codec = self.codec
        if isinstance(codec, Http2Codec):
            # What was queued for the stream (its response head) goes out first: libnghttp2
            # would otherwise drop it for the RST_STREAM, and Envoy sends both.
            self._flush_now()
            codec.reset(stream.stream_id, _reset_code(stream))
            self._flush()
        else:
            self._close()  # HTTP/1.1 has no stream reset: the connection goes

    def _h1_response_done(self, stream: ActiveStream) -> None:
        codec = self.codec
        assert isinstance(codec, Http1ServerCodec)
        codec.response_complete()
        if codec.close_after_response or not stream.body.ended:
            # Envoy (conn_manager_impl doEndStream) skips the delayed close when a proxied
            # response ends a request that was read to its end and asked to close: no race
            # to guard against. Its local replies and error closes keep the delay (measured
            # against Envoy 1.40 in tests/conformance/http/test_delayed_close_vs_envoy.py).
            at_once = (codec.client_asked_close and stream.body.ended
                       and stream.info.response_details == "via_upstream")
            self._close(delayed=not at_once)  # also when the request was not read to its end

    def close_after_response(self) -> None:
        if isinstance(self.codec, Http1ServerCodec):
            self.codec.close_after_response = True
        else:
            if isinstance(self.codec, Http2Codec) and not self._closing:
                self.codec.shutdown_notice()  # Envoy's HTTP/2 way of "connection: close"
                self._flush()
            self._closing = True

    def stream_finished(self, stream: ActiveStream) -> None:
        """Called by the stream's task as it ends (in its `finally`)."""
        if stream.task is not None:
            self.tasks.discard(stream.task)
        if not stream.body.exhausted:
            stream.body.discard()  # unread request DATA: its window comes back
        self.streams.pop(stream.stream_id, None)
        self._pressured.discard(stream.stream_id)
        if isinstance(self.codec, Http1ServerCodec):
            if self.h1_queue and self.h1_queue[0] is stream:
                self.h1_queue.popleft()
            if not stream.complete:
                self._close()
            elif self.h1_queue and not self._transport_gone():
                self._spawn(self.h1_queue[0])
            self._update_reading()
        elif isinstance(self.codec, Http2Codec) and not stream.complete:
            self.codec.reset(stream.stream_id, ErrorCodes.CANCEL)
            self._flush()
        elif isinstance(self.codec, Http2Codec) and not stream.body.ended:
            # RFC 9113 8.1: the response is complete before the request; RST_STREAM NO_ERROR
            # asks the client to stop sending it, as Envoy does. The response goes out first
            # (libnghttp2 would otherwise put the RST_STREAM ahead of it).
            self._flush_now()
            self.codec.reset(stream.stream_id, ErrorCodes.NO_ERROR)
            self._flush()
        if not self.streams:
            if self._closing:
                self._close()
            else:
                self._arm_timer(self.settings.idle_timeout)
                if self._headers_deadline is not None:
                    self._rearm_headers_deadline()  # a pipelined head may be in progress

    def _rearm_headers_deadline(self) -> None:
        assert self._headers_deadline is not None
        due = self._headers_deadline.due
        if due is not None:
            self._arm_timer(max(due - self._loop.time(), 0.001))

    def log_stream(self, stream: ActiveStream) -> None:
        status = stream.info.response_code
        if status is not None:
            self.count_stat(_RQ_CLASS_STATS.get(status // 100)
                            or f"downstream_rq_{status // 100}xx")
        if self._on_stream_log is not None:
            try:
                self._on_stream_log(stream)
            except Exception:
                log.exception("access log failed")

    # --- flow control --------------------------------------------------------------------------

    def body_pressure(self, stream_id: int, on: bool) -> None:
        if isinstance(self.codec, Http2Codec):
            return  # the peer's window bounds it
        if on:
            self._pressured.add(stream_id)
        else:
            self._pressured.discard(stream_id)
        self._update_reading()

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._transport_gone():
            return
        if self._pressured:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def body_consumed(self, stream_id: int, length: int) -> None:
        if isinstance(self.codec, Http2Codec):
            self.codec.acknowledge(stream_id, length)
            self._flush()

    def _transport_gone(self) -> bool:
        """Closed, closing, or waiting out the delayed close: nothing more is written."""
        return self.transport is None or self.transport.is_closing() \
            or self._delayed_close is not None

    async def _wait_window(self) -> None:
        waiter = self._loop.create_future()
        self.window_waiters.append(waiter)
        await waiter

    def _wake_writers(self) -> None:
        waiters, self.window_waiters = self.window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- helpers -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        """Queue bytes for the socket; one write per loop iteration (fewer syscalls)."""
        self._out.append(data)
        self._schedule_flush()

    def _flush(self) -> None:
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        if isinstance(self.codec, Http2Codec):
            data = self.codec.data_to_send()
            if data:
                self._out.append(data)
        if self._out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self._out) if len(self._out) > 1 else self._out[0])
        self._out.clear()

    def _close(self, *, delayed: bool = True) -> None:
        """Close after flushing. With delayed_close_timeout (Envoy's FlushWriteAndDelay), the
        socket stays open that long for the client to close first: a client still sending
        (a rejected body, pipelined requests) would otherwise get an RST that can destroy the
        response in its receive buffer (HCM delayed_close_timeout docs). `delayed=False` is
        Envoy's FlushWrite: close once written."""
        transport = self.transport
        if transport is None or transport.is_closing() or self._delayed_close is not None:
            return
        self._flush_now()
        delay = self.settings.delayed_close_timeout if delayed else 0
        if not delay:
            transport.close()
            return
        self._delayed_close = self._loop.call_later(delay, self._close_now)
        transport.resume_reading()  # drain the client meanwhile (data_received drops it)

    def _close_now(self) -> None:
        self._delayed_close = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def start_draining(self) -> None:
        """The listener drains: finish what is in flight, take nothing new (Envoy draining:
        HTTP/1.1 answers with `connection: close`, HTTP/2 sends GOAWAY NO_ERROR)."""
        self._closing = True
        codec = self.codec
        if isinstance(codec, Http2Codec):
            codec.graceful_goaway()
            self._flush()
        elif isinstance(codec, Http1ServerCodec):
            codec.close_after_response = True
        if not self.streams:
            self._close()

    def shutdown(self) -> None:
        """Stop everything now (the listener is closing or the handler exits)."""
        if isinstance(self.codec, Http2Codec):
            self.codec.close()
            self._flush_now()
        if self.transport is not None:
            self.transport.abort()

    def _arm_timer(self, seconds: float | None) -> None:
        """Time out `seconds` from now (None: not at all). Lazy: a busy connection moves a
        deadline instead of creating and cancelling a timer handle per request; a timer that
        fires before the deadline re-arms itself for the rest."""
        if not seconds:
            self._deadline = None
            return
        loop = self._loop
        self._deadline = loop.time() + seconds
        if self._timer is not None and self._timer.when() <= self._deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(self._deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        loop = self._loop
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._on_timer)
            return
        self._deadline = None
        self._on_timeout()

    def _on_timeout(self) -> None:
        """idle_timeout with no stream, or request_headers_timeout for a head in progress."""
        deadline = self._headers_deadline
        if deadline is not None and deadline.expired(self._loop.time()):
            self._on_request_headers_timeout()
            return
        if self.streams:
            return
        self.count_stat("downstream_cx_idle_timeout")
        if isinstance(self.codec, Http2Codec):
            self.codec.close(ErrorCodes.NO_ERROR)
        self._close()

    def _on_request_headers_timeout(self) -> None:
        """Envoy 1.40: 408 "request header timeout" and close; the stream Envoy opened at the
        first byte counts as a request (downstream_rq_total, downstream_rq_4xx) and is
        logged (details request_header_timeout)."""
        self.count_stat("downstream_rq_header_timeout")
        self.count_stat("downstream_rq_total")
        http2 = isinstance(self._headers_deadline, Http2HeadersDeadline)
        record = ActiveStream(self, 0, RequestHead(
            method="", path="", authority="", scheme=self.scheme,
            protocol="HTTP/2" if http2 else "HTTP/1.1"))
        record.info.response_details = "request_header_timeout"
        if isinstance(self._headers_deadline, Http2HeadersDeadline):
            self._h2_header_block_timeout(self._headers_deadline.expire(), record)
            return
        if self.h1_queue or self.transport is None:
            self._close()  # a pipelined response is still being written: only closing is left
            self.log_stream(record)
            return
        head, body = render_local_reply(header_timeout_reply(), None)
        record.info.response_code = head.status
        record.info.bytes_sent = len(body)
        if self.settings.server_header != "PASS_THROUGH":
            head.headers.set("server", self.settings.server_name)
        head.headers.set("date", http_date())
        assert isinstance(self.codec, Http1ServerCodec)
        self.codec.close_after_response = True
        self._write(self.codec.encode_response_head(head, end_stream=not body) + body)
        self._close()
        self.log_stream(record)  # counts downstream_rq_4xx

    def _h2_header_block_timeout(self, stream_id: int, record: ActiveStream) -> None:
        """Envoy 1.40 on HTTP/2: 408 "request header timeout" on the stream whose header
        block did not end in time, then RST_STREAM NO_ERROR; the connection stays (measured
        in tests/conformance/http/test_request_timeouts_vs_envoy.py)."""
        assert isinstance(self.codec, Http2Codec)
        reply = header_timeout_reply()
        reply.close_connection = False
        head, body = render_local_reply(reply, None)
        if self.settings.server_header != "PASS_THROUGH":
            head.headers.set("server", self.settings.server_name)
        head.headers.set("date", http_date())
        self.codec.answer_unopened(stream_id, head, body)
        self._flush()
        if not self.streams:
            self._arm_timer(self.settings.idle_timeout)
        record.info.response_code = head.status
        record.info.bytes_sent = len(body)
        self.log_stream(record)  # counts downstream_rq_4xx

    def count_stat(self, name: str) -> None:
        if self.stats is None:
            return
        counter = self._counters.get(name)
        if counter is None:  # stat names built once per connection, not per request
            counter = self.stats.counter(f"http.{self.settings.stat_prefix}.{name}")
            self._counters[name] = counter
        counter.inc()

    def __repr__(self) -> str:
        kind = type(self.codec).__name__ if self.codec else "undecided"
        return (f"HttpConnectionHandler(#{self.connection_id} {kind} "
                f"{self.remote_address[0]}:{self.remote_address[1]} streams={len(self.streams)})")


def _reset_code(stream: ActiveStream) -> int:
    """The RST_STREAM code for a stream we reset. A tunnel (upgrade or CONNECT) whose upstream
    went away (reset or closed) while the client still sends gets CONNECT_ERROR (RFC 9113
    8.5: the TCP connection failed); anything else INTERNAL_ERROR. Both as Envoy 1.40 does,
    measured in tests/conformance/http/test_websocket_h2_vs_envoy.py."""
    info = stream.info
    if info.request.upgrade and not stream.body.ended \
            and info.response_details.startswith(LATE_RESET):
        return ErrorCodes.CONNECT_ERROR
    return ErrorCodes.INTERNAL_ERROR


_RQ_CLASS_STATS = {n: f"downstream_rq_{n}xx" for n in range(1, 6)}


def _protocol_text(event: ProtocolFailed) -> str:
    return {426: "", 431: ""}.get(event.status, "Bad Request")
