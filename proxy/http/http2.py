"""HTTP/2 codec over python-hyper/h2, sans-I/O, for both sides of the proxy.

h2 does the framing, HPACK, stream states and flow-control accounting (RFC 9113); this module
translates its events into ours and pseudo-headers into `RequestHead`/`ResponseHead`. A
protocol error from the peer ends the connection with GOAWAY carrying h2's error code
(RFC 9113 section 5.4.1); a malformed request (missing pseudo-header, connection-specific
header) resets only that stream with PROTOCOL_ERROR (section 8.1.1).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hpack import Encoder, NeverIndexedHeaderTuple
from hyperframe.frame import GoAwayFrame

from proxy.http.events import (
    ConnectionEnded,
    DataReceived,
    Event,
    InformationalReceived,
    ProtocolFailed,
    RequestReceived,
    ResponseReceived,
    SettingsChanged,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowOpened,
)
from proxy.http.headers import Headers, RequestHead, ResponseHead
from proxy.http.http1 import HOP_BY_HOP

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Envoy's defaults (config/core/v3/protocol.proto Http2ProtocolOptions).
DEFAULT_MAX_CONCURRENT_STREAMS = 2147483647
DEFAULT_STREAM_WINDOW = 256 * 1024 * 1024
DEFAULT_CONNECTION_WINDOW = 256 * 1024 * 1024
# What we advertise: large enough not to throttle, small enough to bound buffering per stream.
ADVERTISED_STREAM_WINDOW = 1024 * 1024


_VOLATILE = frozenset({"x-request-id", "date", "x-envoy-upstream-service-time", "traceparent",
                       "x-envoy-original-path"})


class PlainLiteralEncoder(Encoder):
    """HPACK encoder that sends string literals without Huffman coding.

    RFC 7541 section 5.2 lets the sender choose per literal. hpack's Huffman coder is a
    per-character Python loop and was ~5% of the proxy's CPU per HTTP/2 request; the bytes it
    saves matter only for literals not in the dynamic table (request ids, dates), a few
    bytes per request on the wire."""

    def encode(self, headers: object, huffman: bool = True) -> bytes:  # type: ignore[override]
        return super().encode(headers, huffman=False)  # type: ignore[arg-type]


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Http2Codec:
    """One HTTP/2 connection, server (downstream) or client (upstream) side."""

    def __init__(self, *, client_side: bool, scheme: str = "http",
                 max_concurrent_streams: int = 1024,
                 initial_window_size: int = ADVERTISED_STREAM_WINDOW,
                 max_header_list_size: int = 60 * 1024) -> None:
        # Inbound headers are validated (hostile peers); outbound ones are ours, built from
        # validated input with lower-case names, so h2's per-header checks are skipped.
        config = h2.config.H2Configuration(client_side=client_side, header_encoding=None,
                                           validate_inbound_headers=True,
                                           normalize_inbound_headers=True,
                                           validate_outbound_headers=False,
                                           normalize_outbound_headers=False)
        self.conn = h2.connection.H2Connection(config)
        self.conn.encoder = PlainLiteralEncoder()
        self.client_side = client_side
        self.scheme = scheme
        self.closed = False
        self._settings: dict[h2.settings.SettingCodes | int, int] = {
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window_size,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
        }
        if client_side:
            del self._settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS]
            self._settings[h2.settings.SettingCodes.ENABLE_PUSH] = 0
        self._connection_window = initial_window_size * 16

    def initiate(self) -> None:
        self.conn.initiate_connection()
        self.conn.update_settings(self._settings)
        grow = self._connection_window - self.conn.inbound_flow_control_window
        if grow > 0:
            self.conn.increment_flow_control_window(grow)

    def data_to_send(self) -> bytes:
        return self.conn.data_to_send()

    # --- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            return []
        try:
            received = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as error:
            self.closed = True
            code = getattr(error, "error_code", h2.errors.ErrorCodes.PROTOCOL_ERROR)
            self.conn.close_connection(error_code=code, additional_data=str(error)[:64].encode())
            return [ProtocolFailed(f"HTTP/2 protocol error: {error}", int(code))]
        events: list[Event] = []
        for event in received:
            events.extend(self._translate(event))
        return events

    def _translate(self, event: h2.events.Event) -> list[Event]:
        if isinstance(event, h2.events.RequestReceived):
            return self._request(event)
        if isinstance(event, h2.events.ResponseReceived):
            return [self._response(event)]
        if isinstance(event, h2.events.InformationalResponseReceived):
            head = self._response_head(event.headers)
            return [InformationalReceived(event.stream_id, head)]
        if isinstance(event, h2.events.TrailersReceived):
            events: list[Event] = [TrailersReceived(event.stream_id, self._plain(event.headers))]
            if event.stream_ended is not None:
                events.append(StreamEnded(event.stream_id))
            return events
        if isinstance(event, h2.events.DataReceived):
            return [DataReceived(event.stream_id, event.data, False,
                                 event.flow_controlled_length)]
        if isinstance(event, h2.events.StreamEnded):
            return [StreamEnded(event.stream_id)]
        if isinstance(event, h2.events.StreamReset):
            return [StreamReset(event.stream_id, int(event.error_code), event.remote_reset)]
        if isinstance(event, h2.events.WindowUpdated):
            return [WindowOpened(event.stream_id)]
        if isinstance(event, h2.events.RemoteSettingsChanged):
            changed = event.changed_settings.get(h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
            opened = [WindowOpened(0)]
            return [SettingsChanged(changed.new_value if changed else None), *opened]
        if isinstance(event, h2.events.ConnectionTerminated):
            if not event.error_code:
                self._keep_open_after_goaway()
            return [ConnectionEnded(event.last_stream_id or 0, int(event.error_code or 0))]
        return []

    def _keep_open_after_goaway(self) -> None:
        """A GOAWAY NO_ERROR is graceful (RFC 9113 6.8): streams up to its last stream id
        still complete. h2 closes its state machine on any GOAWAY, so reopen it; the owner
        stops opening new streams on ConnectionEnded."""
        open_state = (h2.connection.ConnectionState.CLIENT_OPEN if self.client_side
                      else h2.connection.ConnectionState.SERVER_OPEN)
        self.conn.state_machine.state = open_state

    def _request(self, event: h2.events.RequestReceived) -> list[Event]:
        pseudo: dict[str, str] = {}
        headers = Headers()
        for raw_name, raw_value in event.headers:
            name, value = _text(raw_name), _text(raw_value)
            if name.startswith(":"):
                pseudo[name] = value
            else:
                headers.add(name, value)
        method = pseudo.get(":method", "")
        authority = pseudo.get(":authority") or headers.get("host") or ""
        headers.remove("host")
        if method == "CONNECT":
            head = RequestHead(method, "", authority, "", headers, "HTTP/2", upgrade="connect")
        elif not pseudo.get(":path") or not authority:
            # RFC 9113 section 8.3.1: :method, :scheme and :path are mandatory.
            self.reset(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return [StreamReset(event.stream_id, int(h2.errors.ErrorCodes.PROTOCOL_ERROR),
                                remote=False)]
        else:
            head = RequestHead(method, pseudo[":path"], authority,
                               pseudo.get(":scheme", self.scheme), headers, "HTTP/2")
        ended = event.stream_ended is not None
        events: list[Event] = [RequestReceived(event.stream_id, head, ended)]
        if ended:
            events.append(StreamEnded(event.stream_id))
        return events

    def _response_head(self, raw: list[tuple[bytes, bytes]]) -> ResponseHead:
        status = 0
        headers = Headers()
        for raw_name, raw_value in raw:
            name, value = _text(raw_name), _text(raw_value)
            if name == ":status":
                status = int(value)
            elif not name.startswith(":"):
                headers.add(name, value)
        return ResponseHead(status, headers)

    def _response(self, event: h2.events.ResponseReceived) -> Event:
        head = self._response_head(event.headers)
        return ResponseReceived(event.stream_id, head, event.stream_ended is not None)

    @staticmethod
    def _plain(raw: list[tuple[bytes, bytes]]) -> Headers:
        return Headers((_text(n), _text(v)) for n, v in raw if not _text(n).startswith(":"))

    # --- sending -----------------------------------------------------------------------------

    def new_stream_id(self) -> int:
        return self.conn.get_next_available_stream_id()

    def send_request_head(self, stream_id: int, head: RequestHead, *, end_stream: bool) -> None:
        if head.method == "CONNECT":
            block = [(":method", "CONNECT"), (":authority", head.authority)]
        else:
            block = [(":method", head.method), (":scheme", head.scheme or "http"),
                     (":authority", head.authority), (":path", head.path)]
        block.extend(self._regular(head.headers))
        self.conn.send_headers(stream_id, block, end_stream=end_stream)

    def send_response_head(self, stream_id: int, head: ResponseHead, *, end_stream: bool) -> None:
        block = [(":status", str(head.status)), *self._regular(head.headers)]
        self.conn.send_headers(stream_id, block, end_stream=end_stream)

    @staticmethod
    def _regular(headers: Headers) -> list[tuple[str, str]]:
        # RFC 9113 section 8.2.2: no connection-specific fields; TE only as "trailers".
        # Values unique per request stay out of the HPACK dynamic table (RFC 7541 6.2.3):
        # indexing them only evicts entries that would have been reused.
        return [(NeverIndexedHeaderTuple(name, value)  # type: ignore[misc]
                 if name in _VOLATILE else (name, value))
                for name, value in headers
                if name not in HOP_BY_HOP or (name == "te" and value.lower() == "trailers")]

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        self.conn.send_headers(stream_id, list(self._regular(trailers)), end_stream=True)

    def sendable(self, stream_id: int) -> int:
        """How many DATA bytes may be sent now on `stream_id` (flow control and frame size)."""
        try:
            window = self.conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return -1
        return min(window, self.conn.max_outbound_frame_size)

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        self.conn.send_data(stream_id, data, end_stream=end_stream)

    def end_stream(self, stream_id: int) -> None:
        self.conn.end_stream(stream_id)

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Return `length` bytes of window to the peer once they left our buffers."""
        if length <= 0:
            return
        try:
            self.conn.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError,
                KeyError):
            self.conn.increment_flow_control_window(length)

    def reset(self, stream_id: int, code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        try:
            self.conn.reset_stream(stream_id, error_code=code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError,
                h2.exceptions.ProtocolError):
            pass

    def stream_open(self, stream_id: int) -> bool:
        stream = self.conn.streams.get(stream_id)
        return stream is not None and not stream.closed

    def graceful_goaway(self) -> bytes:
        """A GOAWAY NO_ERROR naming the highest stream we received (RFC 9113 6.8), built
        outside h2's state machine so the streams in flight can still finish."""
        last = self.conn.highest_inbound_stream_id
        return GoAwayFrame(0, last_stream_id=last, error_code=0).serialize()

    def close(self, error_code: int = 0) -> None:
        if not self.closed:
            self.closed = True
            self.conn.close_connection(error_code=error_code)

    @property
    def open_outbound_streams(self) -> int:
        return self.conn.open_outbound_streams

    @property
    def peer_max_concurrent_streams(self) -> int:
        return self.conn.remote_settings.max_concurrent_streams
