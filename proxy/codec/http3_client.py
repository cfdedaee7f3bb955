"""HTTP/3 over aioquic, the client side (upstream HTTP/3): our requests -> aioquic's
H3Connection, its events -> `proxy.codec.events`.

Sans-I/O like the server side (proxy.codec.http3): `receive_quic_event(event)` takes one
aioquic QUIC event and returns our events; the send methods queue frames on the QUIC
connection, whose datagrams the pool's adapter (proxy.upstream.pools.http3) sends. A stream's
first final HEADERS is the response, 1xx ones are informational, a later HEADERS its trailers
(RFC 9114 4.1). The stream limit is the server's MAX_STREAMS (RFC 9000 4.6): `capacity()`.
"""

from __future__ import annotations

from aioquic.h3 import events as h3_events
from aioquic.h3.connection import H3Connection
from aioquic.quic import events as quic_events
from aioquic.quic.connection import QuicConnection

from proxy.codec.events import (
    DataReceived,
    Event,
    InformationalReceived,
    ResetReason,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http2 import ErrorCodes
from proxy.codec.http3 import H3_REQUEST_CANCELLED, H3_REQUEST_REJECTED, _plain, _regular

PROTOCOL = "HTTP/3"


class Http3ClientCodec:
    """One HTTP/3 connection's client side over an aioquic QuicConnection."""

    def __init__(self, quic: QuicConnection) -> None:
        self.quic = quic
        self.h3 = H3Connection(quic)
        self._responded: set[int] = set()  # streams whose final response head arrived
        self._open: set[int] = set()  # streams whose exchange is not over
        self._sending: set[int] = set()  # streams we may still send on
        self.opened = 0  # bidirectional streams opened so far (their IDs are 4n, RFC 9000 2.1)

    def capacity(self) -> int:
        """Streams we may still open: the server's cumulative MAX_STREAMS (bidi) minus the
        streams opened (RFC 9000 4.6). aioquic keeps the peer's limit without an accessor."""
        return int(self.quic._remote_max_streams_bidi) - self.opened

    # --- sending -------------------------------------------------------------------------------

    def send_request_head(self, head: RequestHead, *, end_stream: bool) -> int:
        """Open a stream with this request (RFC 9114 4.3.1 pseudo-headers); its id."""
        stream_id = self.quic.get_next_available_stream_id()
        block = [(b":method", head.method.encode("latin-1")),
                 (b":scheme", (head.scheme or "https").encode("latin-1")),
                 (b":authority", head.authority.encode("latin-1")),
                 (b":path", head.path.encode("latin-1")),
                 *_regular(head.headers)]
        self.h3.send_headers(stream_id, block, end_stream=end_stream)
        self.opened += 1
        self._open.add(stream_id)
        if not end_stream:
            self._sending.add(stream_id)
        return stream_id

    def stream_open(self, stream_id: int) -> bool:
        return stream_id in self._sending

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        if stream_id in self._sending:
            self.h3.send_data(stream_id, data, end_stream=end_stream)
            if end_stream:
                self._sending.discard(stream_id)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        if stream_id in self._sending:
            self.h3.send_headers(stream_id, _regular(trailers), end_stream=True)
            self._sending.discard(stream_id)

    def buffered(self, stream_id: int) -> int:
        """Bytes of the stream queued in aioquic, not yet acknowledged (no public accessor)."""
        stream = self.quic._streams.get(stream_id)
        return len(stream.sender._buffer) if stream is not None else 0

    def reset(self, stream_id: int, code: int = H3_REQUEST_CANCELLED) -> None:
        """Abandon a stream: RESET_STREAM for our side, STOP_SENDING for the server's
        (RFC 9114 4.1.1: H3_REQUEST_CANCELLED)."""
        if stream_id in self._sending:
            self.quic.reset_stream(stream_id, code)
        if stream_id in self._open:
            try:
                self.quic.stop_stream(stream_id, code)
            except ValueError:
                pass  # the server's side already ended
        self.finished(stream_id)

    def finished(self, stream_id: int) -> None:
        self._open.discard(stream_id)
        self._sending.discard(stream_id)
        self._responded.discard(stream_id)

    # --- receiving -----------------------------------------------------------------------------

    def receive_quic_event(self, event: quic_events.QuicEvent) -> list[Event]:
        out: list[Event] = []
        if isinstance(event, quic_events.StreamReset) and event.stream_id in self._open:
            out.append(_reset(event.stream_id, event.error_code))
            self._open.discard(event.stream_id)
            return out
        for h3_event in self.h3.handle_event(event):
            self._translate(h3_event, out)
        return out

    def _translate(self, event: h3_events.H3Event, out: list[Event]) -> None:
        if isinstance(event, h3_events.DataReceived):
            if event.stream_id not in self._responded:
                return
            if event.data:
                out.append(DataReceived(event.stream_id, event.data))
            if event.stream_ended:
                out.append(StreamEnded(event.stream_id))
                self._open.discard(event.stream_id)
        elif isinstance(event, h3_events.HeadersReceived):
            self._headers(event, out)

    def _headers(self, event: h3_events.HeadersReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        if stream_id not in self._open:
            return
        if stream_id in self._responded:
            out.append(TrailersReceived(stream_id, _plain(event.headers)))
            out.append(StreamEnded(stream_id))  # trailers end the message (RFC 9114 4.1)
            self._open.discard(stream_id)
            return
        head = _response_head(event.headers)
        if head is None:  # RFC 9114 4.1.2: malformed, a stream error
            self.reset(stream_id, 0x10E)  # H3_MESSAGE_ERROR
            out.append(StreamReset(stream_id, 0x10E, remote=False,
                                   reason=ResetReason.PROTOCOL_ERROR))
            return
        if 100 <= head.status < 200:
            out.append(InformationalReceived(stream_id, head))
            return
        self._responded.add(stream_id)
        out.append(ResponseReceived(stream_id, head, event.stream_ended))
        if event.stream_ended:
            out.append(StreamEnded(stream_id))
            self._open.discard(stream_id)


def _response_head(raw: list[tuple[bytes, bytes]]) -> ResponseHead | None:
    """`:status` and the regular fields; None without a valid :status (RFC 9114 4.3.2)."""
    status = b""
    for name, value in raw:
        if name == b":status":
            status = value
    if len(status) != 3 or not status.isdigit():
        return None
    return ResponseHead(int(status), _plain(raw))


def _reset(stream_id: int, code: int) -> StreamReset:
    """The server's RESET_STREAM in the router's terms: H3_REQUEST_REJECTED means the request
    was not processed (RFC 9114 8.1), as HTTP/2's REFUSED_STREAM (retry_on refused-stream)."""
    if code == H3_REQUEST_REJECTED:
        return StreamReset(stream_id, ErrorCodes.REFUSED_STREAM,
                           reason=ResetReason.REMOTE_REFUSED_STREAM_RESET)
    return StreamReset(stream_id, code, reason=ResetReason.REMOTE_RESET)
