"""One downstream HTTP connection, whatever its protocol: what HTTP/1.1 and HTTP/2 share.

A `ServerConnection` is fed the bytes its transport received (`receive`) and told when the
peer closed or the transport went (`peer_closed`, `lost`); it turns the codec's events into
streams (proxy.http.active_stream), owns their tasks (cancelled when the connection goes),
batches what they write into one transport write per loop iteration, and runs the connection's
timers: `idle_timeout` (HCM common_http_protocol_options) and `request_headers_timeout`
through one lazily re-armed loop timer, and the streams' own timers (StreamTimers). Closing
follows Envoy's delayed close (HCM delayed_close_timeout). What differs per protocol is in the
subclasses, proxy.http.http1_server and proxy.http.http2_server; proxy.http.downstream is the
asyncio adapter that picks one and feeds it.
"""

from __future__ import annotations

import asyncio
import logging
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
from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.http.active_stream import ActiveStream, http_date
from proxy.http.header_timeout import HeadersDeadline, Http2HeadersDeadline
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.stream_timers import StreamTimers

log = logging.getLogger(__name__)

_RQ_CLASS_STATS = {n: f"downstream_rq_{n}xx" for n in range(1, 6)}


class ServerConnection:
    """The protocol-neutral part of a downstream connection (the `StreamOwner` of its
    streams). Subclasses set `codec` and implement the hooks marked below."""

    codec: Any  # the protocol's codec: receive_data(bytes) -> events
    # The codec queues output of its own (HTTP/2 frames: data_to_send()): every read may
    # have an answer to flush. HTTP/1.1 writes only what the streams write.
    codec_writes = False

    def __init__(self, manager: HttpManager, info: ConnectionInfo,
                 transport: asyncio.Transport, loop: asyncio.AbstractEventLoop,
                 flow: WriteFlow) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.info = info
        self.transport = transport
        self.loop = loop
        self.flow = flow
        self.streams: dict[int, ActiveStream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.timers = StreamTimers(loop)  # the streams' idle timeouts and deadlines
        self.closing = False  # no new streams once the current ones are done
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._delayed_close: asyncio.TimerHandle | None = None
        # request_headers_timeout (None when not configured: no per-read work)
        self.headers_deadline: HeadersDeadline | Http2HeadersDeadline | None = None

    # --- fed by the asyncio adapter ------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self._delayed_close is not None:
            return  # closing: what the client still sends is dropped (delayed close)
        for event in self.codec.receive_data(data):
            self._on_event(event)
        if self.headers_deadline is not None:
            self.watch_request_head(data)
        if self.codec_writes or self._out:
            self.flush()

    def peer_closed(self) -> None:
        """The client's FIN. While we wait out a delayed close it is what the delay hoped for;
        otherwise it ends the connection, streams in flight included (they end with DC,
        downstream_remote_disconnect): Envoy's HTTP connection manager does not half-close,
        an HTTP/1.1 client still awaiting a response included (measured against Envoy 1.40
        in tests/conformance/proxy/http/test_upstream_faults_vs_envoy.py), nor a tunnel
        (tests/conformance/proxy/http/test_websocket_h2_vs_envoy.py)."""
        if self._delayed_close is not None:
            self._delayed_close.cancel()
            self._delayed_close = None
            return
        for stream in list(self.streams.values()):
            if not stream.body.ended:
                stream.body.abort()

    def lost(self) -> None:
        """The transport is gone: every stream ends, every task is cancelled."""
        if self._delayed_close is not None:
            self._delayed_close.cancel()
            self._delayed_close = None
        self._cancel_timer()
        self.timers.close()
        for stream in list(self.streams.values()):
            stream.body.abort()
        for task in list(self.tasks):
            task.cancel()

    # --- events --------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        # Events are final classes: dispatch on the exact type, the frequent ones first.
        kind = type(event)
        if kind is RequestReceived:
            self._on_request(event)  # type: ignore[arg-type]
            return
        if kind is StreamEnded or kind is DataReceived or kind is TrailersReceived \
                or kind is StreamReset or kind is TunnelEstablished:
            stream = self.streams.get(event.stream_id)  # type: ignore[union-attr]
            if stream is None:
                self.stream_gone(event)
            else:
                _to_stream(stream, event)
        elif kind is WindowOpened:
            self.window_opened()
        elif kind is ProtocolFailed:
            self.manager.count("downstream_cx_protocol_error")
            # Envoy counts it for both codecs and logs it at debug; so do we (a flood of
            # junk connections must not flood the log).
            log.debug("connection %d: %s", self.info.connection_id,
                      event.reason)  # type: ignore[union-attr]
            self.protocol_failed(event)  # type: ignore[arg-type]
        elif kind is ConnectionEnded:
            self.closing = True

    def _on_request(self, event: RequestReceived) -> None:
        self._arm_timer(None)
        stream = ActiveStream(self, event.stream_id, event.head)
        self.streams[event.stream_id] = stream
        self.manager.count("downstream_rq_total")
        if event.end_stream:
            stream.body.end()
        expect = event.head.headers.get("expect")
        if expect is not None and expect.lower() == "100-continue":
            # Envoy answers 100-continue itself unless proxy_100_continue (off by default).
            event.head.headers.remove("expect")
            self.continue_100()
        self.stream_arrived(stream)

    def spawn(self, stream: ActiveStream) -> None:
        task = self.loop.create_task(stream.run())
        stream.task = task
        self.tasks.add(task)  # discarded by stream_finished (no done callback per request)

    # --- the protocol's hooks ------------------------------------------------------------------

    def watch_request_head(self, data: bytes) -> None:
        """request_headers_timeout: arm the connection timer when a head starts."""

    def stream_gone(self, event: Event) -> None:
        """An event for a stream no longer ours."""

    def stream_arrived(self, stream: ActiveStream) -> None:
        task = self.loop.create_task(stream.run())  # spawn() inline: once per request
        stream.task = task
        self.tasks.add(task)

    def continue_100(self) -> None:
        """Answer `expect: 100-continue` (HTTP/1.1; HTTP/2 clients just send)."""

    def window_opened(self) -> None:
        """The peer opened flow-control windows (HTTP/2)."""

    def protocol_failed(self, event: ProtocolFailed) -> None:
        raise NotImplementedError

    def idle_timed_out(self) -> None:
        """The connection idled out; it closes next (HTTP/2 says GOAWAY first)."""

    def request_headers_timed_out(self) -> None:
        raise NotImplementedError

    def start_draining(self) -> None:
        """The listener drains: finish what is in flight, take nothing new."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop everything now (the listener is closing or the handler exits)."""
        self.transport.abort()

    # --- what a stream asks of its connection (proxy.http.active_stream.StreamOwner) -----------

    def write_head(self, stream: ActiveStream, head: ResponseHead, *, end_stream: bool) -> None:
        raise NotImplementedError

    def write_data_nowait(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> bool:
        raise NotImplementedError

    async def write_data(self, stream: ActiveStream, data: bytes, *, end_stream: bool) -> None:
        raise NotImplementedError

    async def write_trailers(self, stream: ActiveStream, trailers: Headers) -> None:
        raise NotImplementedError

    def reset_stream(self, stream: ActiveStream) -> None:
        raise NotImplementedError

    def close_after_response(self) -> None:
        raise NotImplementedError

    # --- streams end ---------------------------------------------------------------------------

    def stream_finished(self, stream: ActiveStream) -> None:
        """Called by the stream's task as it ends (in its `finally`)."""
        if stream.task is not None:
            self.tasks.discard(stream.task)
        if not stream.body.exhausted:
            stream.body.discard()  # unread request DATA: its window comes back
        self.streams.pop(stream.stream_id, None)
        self.stream_ended(stream)
        if not self.streams:
            if self.closing:
                self.close()
            else:
                self._arm_timer(self.settings.idle_timeout)
                if self.headers_deadline is not None:
                    self._rearm_headers_deadline()  # a pipelined head may be in progress
        self.log_stream(stream)

    def stream_ended(self, stream: ActiveStream) -> None:
        """The protocol's part of a stream's end."""

    def log_stream(self, stream: ActiveStream) -> None:
        status = stream.info.response_code
        if status is not None:
            self.manager.count(_RQ_CLASS_STATS.get(status // 100)
                               or f"downstream_rq_{status // 100}xx")
        hook = self.manager.on_stream_log
        if hook is not None:
            try:
                hook(stream)
            except Exception:
                log.exception("access log failed")

    def answered_early(self) -> None:
        """A response starts before its request ended. Envoy (conn_manager_impl
        encodeHeaders) counts downstream_rq_response_before_rq_complete."""
        self.manager.count("downstream_rq_response_before_rq_complete")

    def body_pressure(self, stream_id: int, on: bool) -> None:
        """HTTP/2: the peer's window bounds a stream's body; HTTP/1.1 stops reading."""

    def body_consumed(self, stream_id: int, length: int) -> None:
        """HTTP/2 gives the window back; HTTP/1.1 has none."""

    # --- writing -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the socket; one write per loop iteration (fewer syscalls)."""
        self._out.append(data)
        self.flush()

    def flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if self.codec_writes:
            pending = self.codec.data_to_send()
            if pending:
                out.append(pending)
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
        out.clear()

    def transport_gone(self) -> bool:
        """Closed, closing, or waiting out the delayed close: nothing more is written."""
        return self.transport.is_closing() or self._delayed_close is not None

    def close(self, *, delayed: bool = True) -> None:
        """Close after flushing. With delayed_close_timeout (Envoy's FlushWriteAndDelay), the
        socket stays open that long for the client to close first: a client still sending
        (a rejected body, pipelined requests) would otherwise get an RST that can destroy the
        response in its receive buffer (HCM delayed_close_timeout docs). `delayed=False` is
        Envoy's FlushWrite: close once written."""
        transport = self.transport
        if transport.is_closing() or self._delayed_close is not None:
            return
        self.flush_now()
        delay = self.settings.delayed_close_timeout if delayed else 0
        if not delay:
            transport.close()
            return
        self._delayed_close = self.loop.call_later(delay, self._close_now)
        transport.resume_reading()  # drain the client meanwhile (receive drops it)

    def _close_now(self) -> None:
        self._delayed_close = None
        if not self.transport.is_closing():
            self.transport.close()

    # --- the connection timer: idle_timeout, request_headers_timeout ---------------------------

    def arm_idle_timer(self, seconds: float | None = None) -> None:
        """idle_timeout from now (or `seconds`: what is left of it)."""
        self._arm_timer(seconds or self.settings.idle_timeout)

    def _arm_timer(self, seconds: float | None) -> None:
        """Time out `seconds` from now (None: not at all). Lazy: a busy connection moves a
        deadline instead of creating and cancelling a timer handle per request; a timer that
        fires before the deadline re-arms itself for the rest."""
        if not seconds:
            self._deadline = None
            return
        loop = self.loop
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
        loop = self.loop
        if loop.time() < self._deadline:
            self._timer = loop.call_at(self._deadline, self._on_timer)
            return
        self._deadline = None
        self._on_timeout()

    def _on_timeout(self) -> None:
        """idle_timeout with no stream, or request_headers_timeout for a head in progress."""
        deadline = self.headers_deadline
        if deadline is not None and deadline.expired(self.loop.time()):
            self.manager.count("downstream_rq_header_timeout")
            self.manager.count("downstream_rq_total")
            self.request_headers_timed_out()
            return
        if not self.streams:
            self.idle_timeout_now()

    def idle_timeout_now(self) -> None:
        self.manager.count("downstream_cx_idle_timeout")
        self.idle_timed_out()
        self.close()

    def arm_headers_deadline(self) -> None:
        assert self.headers_deadline is not None
        self._arm_timer(self.headers_deadline.timeout)

    def _rearm_headers_deadline(self) -> None:
        assert self.headers_deadline is not None
        due = self.headers_deadline.due
        if due is not None:
            self._arm_timer(max(due - self.loop.time(), 0.001))

    def header_timeout_record(self, protocol: str) -> ActiveStream:
        """The stream Envoy opened at the first byte of a head that timed out: it counts as
        a request (downstream_rq_total, downstream_rq_4xx) and is logged (details
        request_header_timeout)."""
        record = ActiveStream(self, 0, RequestHead(method="", path="", authority="",
                                                   scheme=self.info.scheme, protocol=protocol))
        record.info.response_details = "request_header_timeout"
        return record

    def server_and_date(self, head: ResponseHead) -> None:
        """The `server` and `date` rules for a response the connection writes itself."""
        if self.settings.server_header != "PASS_THROUGH":
            head.headers.set("server", self.settings.server_name)
        head.headers.set("date", http_date())

    def __repr__(self) -> str:
        remote = self.info.remote_address
        return (f"{type(self).__name__}(#{self.info.connection_id} "
                f"{remote[0]}:{remote[1]} streams={len(self.streams)})")


def _to_stream(stream: ActiveStream, event: Any) -> None:
    """A stream event, into the stream's request body (or its task cancelled on a reset)."""
    kind = type(event)
    if kind is StreamEnded:
        stream.body.end(stream.body.trailers)
    elif kind is DataReceived or kind is TunnelEstablished:
        length = event.flow_controlled_length if kind is DataReceived else 0
        if event.data or length:
            stream.body.push(event.data, length)
    elif kind is TrailersReceived:
        stream.body.trailers = event.trailers
    elif kind is StreamReset:
        stream.body.abort()
        if stream.task is not None:
            stream.task.cancel()
