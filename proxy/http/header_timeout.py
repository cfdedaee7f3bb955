"""The HCM's `request_headers_timeout`, sans-I/O: HTTP/1.1 heads and HTTP/2 header blocks.

Envoy docs (HttpConnectionManager.request_headers_timeout): "The timer is activated when the
first byte of the headers is received, and is disarmed when the last byte of the headers has
been received." Envoy's HTTP/1.1 codec opens the stream at the first byte of a request
(llhttp's on_message_begin), so the timer covers every request on a keep-alive connection, not
a connection that sends nothing (that is `idle_timeout`'s business). On expiry Envoy 1.40
answers `408` with the body "request header timeout", closes the connection, and counts
`downstream_rq_header_timeout` (also `downstream_rq_total` and `downstream_rq_4xx`: the stream
existed); measured in tests/conformance/proxy/http/test_request_timeouts_vs_envoy.py.

HTTP/2: Envoy's codec opens the stream when a HEADERS frame starts a request (nghttp2's
on_begin_headers) and the timer ends with the header block, at the END_HEADERS of that HEADERS
frame or of its last CONTINUATION (RFC 9113 6.2, 6.10). libnghttp2 does not tell us about a
block in progress, so `HeaderBlockScanner` reads the frame headers of what the codec is fed.
RFC 9113 4.3: while a block is open no other frame may arrive on the connection, so one block
at a time is all there is to watch. On expiry Envoy 1.40 answers that stream 408 "request
header timeout" and resets it (RST_STREAM NO_ERROR); the connection stays.
"""

from __future__ import annotations

from proxy.http.filter import LocalReply


# What Envoy 1.40 sends (conn_manager_impl onRequestHeaderTimeout; response code details
# "request_header_timeout", no response flag).
def header_timeout_reply() -> LocalReply:
    return LocalReply(408, "request header timeout", details="request_header_timeout",
                      close_connection=True)


class HeadersDeadline:
    """When the request head being received must be complete. `observe` after each read."""

    __slots__ = ("due", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.due: float | None = None

    def observe(self, receiving_head: bool, now: float) -> bool:
        """Update from the codec's state; True when a head just started (arm a timer)."""
        if not receiving_head:
            self.due = None
            return False
        if self.due is not None:
            return False  # the timer runs from the first byte, not the latest
        self.due = now + self.timeout
        return True

    def expired(self, now: float) -> bool:
        return self.due is not None and now >= self.due


PREFACE_LENGTH = 24  # RFC 9113 3.4: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HEADERS, _CONTINUATION = 0x1, 0x9
_END_HEADERS = 0x4


class HeaderBlockScanner:
    """Follows the frames a client sends (after its preface) to know which new stream has a
    header block in progress: `open_stream`, or None. Frames are not checked: the codec is."""

    __slots__ = ("_closes", "_head", "_highest", "_preface", "_skip", "open_stream")

    def __init__(self) -> None:
        self._preface = PREFACE_LENGTH  # bytes of the preface still to skip
        self._head = b""  # a frame header received in part
        self._skip = 0  # payload bytes of the current frame still to come
        self._closes = False  # the current frame carries the block's END_HEADERS
        self._highest = 0  # the highest stream a request started on (later HEADERS: trailers)
        self.open_stream: int | None = None

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        if self._preface:
            skipped = min(self._preface, len(view))
            self._preface -= skipped
            view = view[skipped:]
        while view:
            if self._skip:
                taken = min(self._skip, len(view))
                self._skip -= taken
                view = view[taken:]
                self._frame_end()
                continue
            need = 9 - len(self._head)
            self._head += bytes(view[:need])
            view = view[need:]
            if len(self._head) == 9:
                self._frame_start(self._head)
                self._head = b""

    def _frame_start(self, head: bytes) -> None:
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        self._closes = False
        if kind == _HEADERS and stream > self._highest:
            self._highest = stream
            self.open_stream = stream
            self._closes = bool(flags & _END_HEADERS)
        elif kind == _CONTINUATION and stream == self.open_stream:
            self._closes = bool(flags & _END_HEADERS)
        self._skip = length
        self._frame_end()

    def _frame_end(self) -> None:
        if self._skip == 0 and self._closes:
            self.open_stream = None
            self._closes = False


class Http2HeadersDeadline:
    """request_headers_timeout over an HTTP/2 connection: when the open header block must be
    complete. `feed` the bytes given to the codec; True when a block just started (arm)."""

    __slots__ = ("due", "scanner", "stream", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.scanner = HeaderBlockScanner()
        self.due: float | None = None
        self.stream: int | None = None  # the stream timed (also once it timed out)

    def feed(self, data: bytes, now: float) -> bool:
        self.scanner.feed(data)
        opened = self.scanner.open_stream
        if opened is None:
            self.due = self.stream = None
            return False
        if opened == self.stream:
            return False  # timed from its first byte already (or timed out)
        self.stream, self.due = opened, now + self.timeout
        return True

    def expired(self, now: float) -> bool:
        return self.due is not None and now >= self.due

    def expire(self) -> int:
        """The stream whose header block timed out; it is not timed again."""
        assert self.stream is not None
        self.due = None
        return self.stream
