"""HTTP/3 over aioquic, the server side: aioquic's H3Connection events -> our codec events.

Sans-I/O like the other codecs: `receive_quic_event(event)` takes one aioquic QUIC event and
returns `proxy.codec.events` events; the send methods queue frames on the QUIC connection,
whose datagrams the QUIC session (proxy.listeners.quic) sends. aioquic parses the frames and
QPACK (pylsqpack) and checks the request's pseudo-headers (RFC 9114 4.3.1); a peer breaking
HTTP/3 closes the connection with the H3 error aioquic chose. A stream's first HEADERS is the
request, a later one its trailers (RFC 9114 4.1).
"""

from __future__ import annotations

from typing import Any

from aioquic.buffer import encode_uint_var
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import FrameType, H3Connection, encode_frame
from aioquic.quic import events as quic_events
from aioquic.quic.connection import QuicConnection

from proxy.codec.events import (
    DataReceived,
    Event,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from proxy.codec.headers import Headers, RequestHead, ResponseHead

PROTOCOL = "HTTP/3"
ALPN = ("h3",)

# RFC 9114 8.1 error codes.
H3_NO_ERROR = 0x100
H3_INTERNAL_ERROR = 0x102
H3_REQUEST_REJECTED = 0x10B
H3_REQUEST_CANCELLED = 0x10C
H3_MESSAGE_ERROR = 0x10E

# RFC 9114 4.2: connection-specific fields never go out (TE only as "trailers").
_CONNECTION_SPECIFIC = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
    "http2-settings", "host",
})


class FlowControlledQuicConnection(QuicConnection):
    """aioquic's QuicConnection whose streams' receive windows can be held. aioquic doubles
    a stream's MAX_STREAM_DATA as data arrives, not as it is consumed, so a request body
    would never push back on the client; while a stream is in `held` (its body is over the
    buffer limit, proxy.http.body) its window stays where it is, as HTTP/2's does until we
    give it back (RFC 9000 4.1: the receiver grants credit as it sees fit)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held: set[int] = set()

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        if stream.stream_id not in self.held:
            super()._write_stream_limits(builder, space, stream)


def request_head(raw: list[tuple[bytes, bytes]], scheme: str) -> RequestHead | None:
    """Pseudo-headers to a RequestHead; None without :method, :path or :authority (RFC 9114
    4.3.1; aioquic checked which pseudo-headers may appear). Cookie crumbs are joined with
    "; " (RFC 9114 4.2.1) so that upstreams see one cookie header."""
    method = path = authority = ""
    req_scheme = scheme
    items: list[tuple[str, str]] = []
    cookies: list[str] = []
    host = ""
    for raw_name, raw_value in raw:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name.startswith(":"):
            if name == ":method":
                method = value
            elif name == ":path":
                path = value
            elif name == ":authority":
                authority = value
            elif name == ":scheme":
                req_scheme = value
        elif name == "cookie":
            cookies.append(value)
        elif name == "host":
            host = host or value
        else:
            items.append((name, value))
    if cookies:
        items.append(("cookie", "; ".join(cookies)))
    authority = authority or host
    if not method or not path or not authority or method == "CONNECT":
        return None
    return RequestHead(method, path, authority, req_scheme, Headers.adopt(items), PROTOCOL)


def _plain(raw: list[tuple[bytes, bytes]]) -> Headers:
    return Headers((n.decode("latin-1"), v.decode("latin-1"))
                   for n, v in raw if not n.startswith(b":"))


def _regular(headers: Headers) -> list[tuple[bytes, bytes]]:
    block = []
    for name, value in headers:
        if name in _CONNECTION_SPECIFIC or (name == "te" and value.lower() != "trailers"):
            continue
        block.append((name.encode("latin-1"), value.encode("latin-1")))
    return block


class Http3ServerCodec:
    """One HTTP/3 connection's server side over an aioquic QuicConnection."""

    def __init__(self, quic: QuicConnection, *, scheme: str = "https") -> None:
        self.quic = quic
        self.h3 = H3Connection(quic)
        self.scheme = scheme
        self._requests: set[int] = set()  # streams whose request head arrived
        self._sending: set[int] = set()  # streams we may still send on
        self._next_request = 0  # the lowest client stream ID not seen yet
        self.goaway_id: int | None = None  # set once we sent GOAWAY

    # --- receiving -----------------------------------------------------------------------------

    def receive_quic_event(self, event: quic_events.QuicEvent) -> list[Event]:
        out: list[Event] = []
        if isinstance(event, quic_events.StreamReset) and event.stream_id in self._requests:
            out.append(StreamReset(event.stream_id, event.error_code))
            self._forget(event.stream_id)
        for h3_event in self.h3.handle_event(event):
            self._translate(h3_event, out)
        return out

    def _translate(self, event: h3_events.H3Event, out: list[Event]) -> None:
        if isinstance(event, h3_events.DataReceived):
            if event.stream_id not in self._requests:
                return
            if event.data:
                out.append(DataReceived(event.stream_id, event.data))
            if event.stream_ended:
                out.append(StreamEnded(event.stream_id))
        elif isinstance(event, h3_events.HeadersReceived):
            self._headers(event, out)

    def _headers(self, event: h3_events.HeadersReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        if stream_id in self._requests:  # RFC 9114 4.1: a HEADERS after the request's
            out.append(TrailersReceived(stream_id, _plain(event.headers)))
            if event.stream_ended:
                out.append(StreamEnded(stream_id))
            return
        if self.goaway_id is not None and stream_id >= self.goaway_id:
            # RFC 9114 5.2: a request at or above our GOAWAY's ID is not processed.
            self._refuse(stream_id, H3_REQUEST_REJECTED, event.stream_ended)
            return
        self._next_request = max(self._next_request, stream_id + 4)
        head = request_head(event.headers, self.scheme)
        if head is None:  # RFC 9114 4.1.2: a malformed request is a stream error
            self._refuse(stream_id, H3_MESSAGE_ERROR, event.stream_ended)
            return
        self._requests.add(stream_id)
        self._sending.add(stream_id)
        out.append(RequestReceived(stream_id, head, event.stream_ended))

    def _refuse(self, stream_id: int, code: int, ended: bool) -> None:
        self.quic.reset_stream(stream_id, code)
        if not ended:
            self.quic.stop_stream(stream_id, code)

    # --- sending -------------------------------------------------------------------------------

    def stream_open(self, stream_id: int) -> bool:
        return stream_id in self._sending

    def send_response_head(self, stream_id: int, head: ResponseHead, *,
                           end_stream: bool) -> None:
        block = [(b":status", str(head.status).encode()), *_regular(head.headers)]
        self.h3.send_headers(stream_id, block, end_stream=end_stream)
        if end_stream:
            self._sending.discard(stream_id)

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        self.h3.send_data(stream_id, data, end_stream=end_stream)
        if end_stream:
            self._sending.discard(stream_id)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        self.h3.send_headers(stream_id, _regular(trailers), end_stream=True)
        self._sending.discard(stream_id)

    def buffered(self, stream_id: int) -> int:
        """Bytes of the stream queued in aioquic and not yet acknowledged (aioquic keeps them
        until acked and bounds nothing itself: the caller waits while this is high)."""
        stream = self.quic._streams.get(stream_id)  # no public accessor in aioquic 1.x
        return len(stream.sender._buffer) if stream is not None else 0

    def hold_window(self, stream_id: int, hold: bool) -> None:
        """Stop (or resume) raising the stream's receive window (FlowControlledQuicConnection)."""
        held = getattr(self.quic, "held", None)
        if held is None:
            return
        if hold:
            held.add(stream_id)
        else:
            held.discard(stream_id)

    def unacknowledged(self) -> bool:
        """Whether any stream still has data the client did not acknowledge (a
        CONNECTION_CLOSE now would lose it: aioquic retransmits nothing once closing)."""
        return any(stream.sender._buffer for stream in self.quic._streams.values())

    def reset(self, stream_id: int, code: int = H3_REQUEST_CANCELLED,
              *, stop_receiving: bool = True) -> None:
        """End a stream early: RESET_STREAM for our side, STOP_SENDING for the client's."""
        if stream_id in self._sending:
            self.quic.reset_stream(stream_id, code)
        if stop_receiving:
            try:
                self.quic.stop_stream(stream_id, code)
            except ValueError:
                pass  # the client's side already ended
        self._forget(stream_id)

    def finished(self, stream_id: int) -> None:
        """The stream's exchange is over: forget it (aioquic frees its own state)."""
        self._forget(stream_id)

    def _forget(self, stream_id: int) -> None:
        self.hold_window(stream_id, False)
        self._requests.discard(stream_id)
        self._sending.discard(stream_id)

    def goaway(self) -> None:
        """GOAWAY on our control stream (RFC 9114 5.2, 7.2.6): requests already opened are
        served, later ones refused. aioquic reads GOAWAY but has no call to send it."""
        control = self.h3._local_control_stream_id
        if self.goaway_id is not None or control is None:
            return
        self.goaway_id = self._next_request
        self.quic.send_stream_data(
            control, encode_frame(FrameType.GOAWAY, encode_uint_var(self.goaway_id)))

    def close(self, code: int = H3_NO_ERROR, reason: str = "") -> None:
        self.quic.close(error_code=code, reason_phrase=reason)
