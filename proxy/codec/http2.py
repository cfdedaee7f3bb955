"""HTTP/2 codec over libnghttp2 (the `ngh2` binding), sans-I/O, for both sides of the proxy.

libnghttp2 (the codec Envoy itself used for years) does the framing, HPACK, stream states,
flow-control accounting and the RFC 9113 message checks: a malformed request (missing or
repeated pseudo-header, connection-specific or upper-case header field, content-length
mismatch) resets only that stream with PROTOCOL_ERROR (section 8.1.1), a connection error ends
the connection with GOAWAY naming the code (section 5.4.1). This module translates its events
into ours and pseudo-headers into `RequestHead`/`ResponseHead`.

Flow control is manual (`auto_window_update=False`): received DATA is acknowledged with
`acknowledge()` only once the bytes have left our buffers, so a slow reader on the other side
closes the window towards a fast writer (Envoy's HTTP/2 flow control).
"""

from __future__ import annotations

from enum import IntEnum

import ngh2

from proxy.codec.events import (
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
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http1 import HOP_BY_HOP

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 6.5.2: no limit on concurrent streams until the peer's SETTINGS name one.
DEFAULT_MAX_CONCURRENT_STREAMS = 2147483647
# What we advertise: large enough not to throttle, small enough to bound buffering per stream.
ADVERTISED_STREAM_WINDOW = 1024 * 1024
# RFC 9113 6.9.2: the window every stream starts with until SETTINGS say otherwise.
_DEFAULT_INITIAL_WINDOW = 65535
# One send_data() call hands at most this much to the codec, so one large body cannot make a
# single write of many megabytes.
_MAX_CHUNK = 1024 * 1024


class StreamRefusedError(Exception):
    """The connection cannot open another stream (it is shutting down)."""


class ErrorCodes(IntEnum):
    """RFC 9113 section 7 error codes, for RST_STREAM and GOAWAY."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


# Values unique per request stay out of the HPACK dynamic table (RFC 7541 6.2.3): indexing
# them only evicts entries that would have been reused.
_VOLATILE = frozenset({b"x-request-id", b"date", b"x-envoy-upstream-service-time",
                       b"traceparent", b"x-envoy-original-path"})
_SETTING_MAX_STREAMS = int(ngh2.Setting.MAX_CONCURRENT_STREAMS)
_SETTING_INITIAL_WINDOW = int(ngh2.Setting.INITIAL_WINDOW_SIZE)
_SETTING_ENABLE_CONNECT = int(ngh2.Setting.ENABLE_CONNECT_PROTOCOL)

# ngh2 event classes, looked up once.
_NgRequest = ngh2.RequestReceived
_NgResponse = ngh2.ResponseReceived
_NgData = ngh2.DataReceived
_NgTrailers = ngh2.TrailersReceived
_NgInformational = ngh2.InformationalResponseReceived
_NgReset = ngh2.StreamReset
_NgClosed = ngh2.StreamClosed
_NgWindow = ngh2.WindowUpdated
_NgSettings = ngh2.SettingsReceived
_NgGoAway = ngh2.GoAwayReceived
_NgConnectionClosed = ngh2.ConnectionClosed


# Received header names, decoded once each (bounded: names come from peers).
_NAMES: dict[bytes, str] = {}
_NAMES_LIMIT = 4096


def _name(raw: bytes) -> str:
    name = raw.decode("latin-1")
    if len(_NAMES) < _NAMES_LIMIT:
        _NAMES[raw] = name
    return name


def _request_head(raw: tuple[ngh2.Header, ...], scheme: str) -> RequestHead | None:
    """Pseudo-headers to a RequestHead; None when a mandatory one is missing (RFC 9113
    8.3.1: :method, :scheme and :path, except for CONNECT). Cookie crumbs are joined with
    "; " (RFC 9113 8.2.3) so upstreams see one cookie header, as Envoy forwards it."""
    method = path = authority = protocol = ""
    req_scheme = scheme
    items: list[tuple[str, str]] = []
    append = items.append
    names = _NAMES
    cookies: list[str] | None = None
    host: str | None = None
    for raw_name, raw_value in raw:
        value = raw_value.decode("latin-1")
        if raw_name[0] == 58:  # ":", a pseudo-header (libnghttp2 checked which may appear)
            if raw_name == b":method":
                method = value
            elif raw_name == b":path":
                path = value
            elif raw_name == b":authority":
                authority = value
            elif raw_name == b":scheme":
                req_scheme = value
            elif raw_name == b":protocol":
                protocol = value
            continue
        name = names.get(raw_name) or _name(raw_name)
        if name == "cookie":
            if cookies is None:
                cookies = []
            cookies.append(value)
        elif name == "host":
            if host is None:
                host = value
        else:
            append((name, value))
    if cookies:
        append(("cookie", "; ".join(cookies)))
    if host is not None:
        authority = authority or host
    headers = Headers.adopt(items)
    if method == "CONNECT":
        if protocol and protocol != "bytestream":
            return _extended_connect(protocol, path, authority, req_scheme, headers)
        return RequestHead(method, "", authority, "", headers, "HTTP/2", upgrade="connect")
    if not path or not authority:
        return None
    return RequestHead(method, path, authority, req_scheme, headers, "HTTP/2")


def _extended_connect(protocol: str, path: str, authority: str, scheme: str,
                      headers: Headers) -> RequestHead:
    """RFC 8441 extended CONNECT (`:protocol websocket`) as the HTTP/1.1 upgrade it stands for,
    as Envoy's codec does (Http::Utility::transformUpgradeRequestFromH2toH1): method GET,
    `upgrade: <protocol>`, `connection: upgrade`. Routes, filters and the upgrade_configs check
    then see one shape for both protocols, and an HTTP/1.1 upstream gets the Upgrade request.
    libnghttp2 accepts `:protocol` only once we advertised SETTINGS_ENABLE_CONNECT_PROTOCOL and
    checks that :scheme, :path and :authority come with it (RFC 8441 section 4)."""
    headers.set("upgrade", protocol)
    headers.set("connection", "upgrade")
    return RequestHead("GET", path, authority, scheme, headers, "HTTP/2",
                       upgrade=protocol.lower())


def _upgrade_response(head: ResponseHead) -> ResponseHead:
    """An upstream's 101 to an upgrade that arrived as extended CONNECT is a 200 on the stream
    (RFC 8441 section 5; HTTP/2 has no 101, RFC 9113 8.6), as Envoy's
    transformUpgradeResponseFromH1toH2: upgrade and connection go (connection-specific), and
    so does a `content-length: 0`."""
    headers = head.headers
    if headers.get("content-length") == "0":
        headers = headers.copy()
        headers.remove("content-length")
    return ResponseHead(200, headers, head.reason)


def _response_head(raw: tuple[ngh2.Header, ...]) -> ResponseHead:
    status = 0
    items: list[tuple[str, str]] = []
    append = items.append
    names = _NAMES
    for raw_name, raw_value in raw:
        if raw_name[0] == 58:  # ":"
            if raw_name == b":status":
                status = int(raw_value)
            continue
        append((names.get(raw_name) or _name(raw_name), raw_value.decode("latin-1")))
    return ResponseHead(status, Headers.adopt(items))


def _plain(raw: tuple[ngh2.Header, ...]) -> Headers:
    return Headers((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw if n[:1] != b":")


# Per header name, computed once: its wire bytes and how it goes out (None: never, it is
# connection-specific). Bounded, since names come from peers too.
_OUTBOUND: dict[str, tuple[bytes, bool] | None] = {}
_OUTBOUND_LIMIT = 4096
_UNKNOWN: tuple[bytes, bool] = (b"", False)  # not in _OUTBOUND yet
_NeverIndexed = ngh2.NeverIndexedHeader
_new_tuple = tuple.__new__


def _outbound(name: str) -> tuple[bytes, bool] | None:
    if name in HOP_BY_HOP and name != "te":
        found = None
    else:
        raw = name.encode("latin-1")
        found = (raw, raw in _VOLATILE)
    if len(_OUTBOUND) < _OUTBOUND_LIMIT:
        _OUTBOUND[name] = found
    return found


def _regular(headers: Headers) -> list[ngh2.Header]:
    """Our header list as HPACK input. RFC 9113 section 8.2.2: no connection-specific fields;
    TE only as "trailers"."""
    block: list[ngh2.Header] = []
    append = block.append
    outbound = _OUTBOUND
    for name, value in headers:
        kind = outbound.get(name, _UNKNOWN)
        if kind is _UNKNOWN:
            kind = _outbound(name)
        if kind is None:
            continue
        raw_name, volatile = kind
        if raw_name == b"te" and value.lower() != "trailers":
            continue
        if volatile:  # a NamedTuple: built with tuple.__new__, a third of its constructor
            append(_new_tuple(_NeverIndexed, (raw_name, value.encode("latin-1"))))
        else:
            append((raw_name, value.encode("latin-1")))
    return block


class Http2Codec:
    """One HTTP/2 connection, server (downstream) or client (upstream) side."""

    def __init__(self, *, client_side: bool, scheme: str = "http",
                 max_concurrent_streams: int = 1024,
                 initial_window_size: int = ADVERTISED_STREAM_WINDOW,
                 connection_window_size: int | None = None,
                 header_table_size: int | None = None,
                 max_header_list_size: int = 60 * 1024,
                 max_headers_count: int = 100,
                 enable_connect_protocol: bool = False) -> None:
        config = ngh2.Configuration(auto_window_update=False,
                                    max_inbound_header_list_size=max_header_list_size)
        role = ngh2.Role.CLIENT if client_side else ngh2.Role.SERVER
        self.conn = ngh2.Connection(role, config)
        self.scheme = scheme
        self.closed = False
        self._settings: dict[int, int] = {
            _SETTING_MAX_STREAMS: max_concurrent_streams,
            _SETTING_INITIAL_WINDOW: initial_window_size,
            int(ngh2.Setting.MAX_HEADER_LIST_SIZE): max_header_list_size,
        }
        if header_table_size is not None:
            # Http2ProtocolOptions.hpack_table_size: the HPACK table the peer's encoder may
            # use towards us (SETTINGS_HEADER_TABLE_SIZE, RFC 7541 4.2); 0 turns indexing off.
            self._settings[int(ngh2.Setting.HEADER_TABLE_SIZE)] = header_table_size
        if enable_connect_protocol and not client_side:
            # Http2ProtocolOptions.allow_connect: RFC 8441 section 3, extended CONNECT.
            self._settings[_SETTING_ENABLE_CONNECT] = 1
        if client_side:
            del self._settings[_SETTING_MAX_STREAMS]
            self._settings[int(ngh2.Setting.ENABLE_PUSH)] = 0
        # Http2ProtocolOptions.initial_connection_window_size; unset: 16 stream windows.
        self._connection_window = (connection_window_size if connection_window_size is not None
                                   else initial_window_size * 16)
        self._open: set[int] = set()
        # common_http_protocol_options.max_headers_count (Envoy counts pseudo-headers too).
        self.max_headers_count = max_headers_count
        # Streams whose request declared a content-length (see _stream_closed).
        self._declared_length: set[int] = set()
        self._empty_data_frames = 0
        self._local_resets: set[int] = set()
        self._remote_goaway = False
        # Client side: streams opened as extended CONNECT for an upgrade -> its protocol.
        self._upgrades: dict[int, str] = {}
        self._pending = b""  # frames serialised inside receive_data, sent by the next flush

    def initiate(self) -> None:
        self.conn.initiate_connection(self._settings)
        if self._connection_window > _DEFAULT_INITIAL_WINDOW:
            self.conn.set_local_window_size(self._connection_window)

    def data_to_send(self) -> bytes:
        try:
            data = self.conn.data_to_send()
        except ngh2.NGH2Error:
            # libnghttp2 ended the session on a fatal error (a client that did not start
            # with the preface, RFC 9113 3.4): nothing more can be sent, not even a GOAWAY.
            # Envoy sends nothing either and closes (tests/conformance/proxy/http/
            # test_h2c_junk_vs_envoy.py).
            self.closed = True
            data = b""
        if self._pending:
            data, self._pending = self._pending + data, b""
        return data

    # --- receiving ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        if self.closed:
            return []
        conn = self.conn
        try:
            conn.receive_data(data)
        except ngh2.NGH2Error as error:
            return self._failed(f"HTTP/2 protocol error: {error}", ErrorCodes.PROTOCOL_ERROR)
        # Serialise what libnghttp2 queued in answer (SETTINGS ACK, PING ACK, a RST_STREAM or
        # GOAWAY for an error it found): the events naming its own resets and a connection
        # error (RFC 9113 5.4.1) are produced only then.
        self._pending += conn.data_to_send()
        events: list[Event] = []
        for event in conn.events():
            self._translate(event, events)
        return events

    def _failed(self, reason: str, code: int) -> list[Event]:
        # Like Envoy, the GOAWAY is all that goes out: drop a RST_STREAM libnghttp2 queued
        # for the malformed stream (a peer would take it as an error on an idle stream).
        self.closed = True
        self._pending = b""
        try:
            self.conn.terminate_connection(code)
        except ngh2.NGH2Error:
            pass
        return [ProtocolFailed(reason, int(code))]

    def _translate(self, event: object, out: list[Event]) -> None:
        kind = type(event)
        if kind is _NgData:
            data = event.data  # type: ignore[attr-defined]
            stream_id = event.stream_id  # type: ignore[attr-defined]
            if data or event.end_stream:  # type: ignore[attr-defined]
                self._empty_data_frames = 0
            elif self._empty_flood():
                out.extend(self._failed("consecutive DATA frames with an empty payload",
                                        ErrorCodes.ENHANCE_YOUR_CALM))
                return
            out.append(DataReceived(stream_id, data, False, len(data)))
            if event.end_stream:  # type: ignore[attr-defined]
                out.append(StreamEnded(stream_id))
        elif kind is _NgRequest:
            self._request(event, out)  # type: ignore[arg-type]
        elif kind is _NgResponse:
            head = _response_head(event.headers)  # type: ignore[attr-defined]
            if self._upgrades:
                head = self._upgrade_answered(event.stream_id, head)  # type: ignore[attr-defined]
            out.append(ResponseReceived(event.stream_id, head,  # type: ignore[attr-defined]
                                        event.end_stream))  # type: ignore[attr-defined]
        elif kind is _NgClosed:
            self._stream_closed(event, out)  # type: ignore[arg-type]
        elif kind is _NgTrailers:
            stream_id = event.stream_id  # type: ignore[attr-defined]
            if len(event.headers) > self.max_headers_count:  # type: ignore[attr-defined]
                self._too_many_headers(stream_id, out)
                return
            out.append(TrailersReceived(stream_id, _plain(event.headers)))  # type: ignore[attr-defined]
            out.append(StreamEnded(stream_id))  # trailers always end the stream (RFC 9113 8.1)
        elif kind is _NgWindow:
            out.append(WindowOpened(event.stream_id))  # type: ignore[attr-defined]
        elif kind is _NgInformational:
            out.append(InformationalReceived(event.stream_id,  # type: ignore[attr-defined]
                                             _response_head(event.headers)))  # type: ignore[attr-defined]
        elif kind is _NgReset:
            stream_id = event.stream_id  # type: ignore[attr-defined]
            self._open.discard(stream_id)
            self._local_resets.add(stream_id)  # reported here; StreamClosed follows
            out.append(StreamReset(stream_id, event.error_code, True))  # type: ignore[attr-defined]
        elif kind is _NgSettings:
            changed = event.settings.get(_SETTING_MAX_STREAMS)  # type: ignore[attr-defined]
            out.append(SettingsChanged(changed))
            out.append(WindowOpened(0))  # INITIAL_WINDOW_SIZE may have grown every window
        elif kind is _NgGoAway:
            self._remote_goaway = True
            out.append(ConnectionEnded(event.last_stream_id,  # type: ignore[attr-defined]
                                       event.error_code))  # type: ignore[attr-defined]
        elif kind is _NgConnectionClosed:
            self._connection_closed(event, out)  # type: ignore[arg-type]

    def _upgrade_answered(self, stream_id: int, head: ResponseHead) -> ResponseHead:
        """A 200 to our extended CONNECT is the 101 of the upgrade it carried (Envoy
        transformUpgradeResponseFromH2toH1); any other status stays as it is."""
        protocol = self._upgrades.pop(stream_id, None)
        if protocol is None or head.status != 200:
            return head
        head.headers.set("upgrade", protocol)
        head.headers.set("connection", "upgrade")
        return ResponseHead(101, head.headers, head.reason)

    def _empty_flood(self) -> bool:
        """Envoy's Http2ProtocolOptions.max_consecutive_inbound_frames_with_empty_payload
        (default 1): a second DATA frame in a row without payload or END_STREAM is a flood."""
        self._empty_data_frames += 1
        return self._empty_data_frames > 1

    def _too_many_headers(self, stream_id: int, out: list[Event]) -> None:
        """More fields than max_headers_count: Envoy resets the stream with INTERNAL_ERROR."""
        self._refuse(stream_id, ErrorCodes.INTERNAL_ERROR, out)

    def _refuse(self, stream_id: int, code: int, out: list[Event]) -> None:
        """Reset a stream we received and will not serve, and tell the owner."""
        self._open.discard(stream_id)
        self._send_reset(stream_id, code)
        out.append(StreamReset(stream_id, int(code), remote=False))

    def _request(self, event: ngh2.RequestReceived, out: list[Event]) -> None:
        stream_id = event.stream_id
        if len(event.headers) > self.max_headers_count:
            self._too_many_headers(stream_id, out)
            return
        head = _request_head(event.headers, self.scheme)
        if head is None:
            self._refuse(stream_id, ErrorCodes.PROTOCOL_ERROR, out)
            return
        self._open.add(stream_id)
        if not event.end_stream and "content-length" in head.headers:
            self._declared_length.add(stream_id)
        out.append(RequestReceived(stream_id, head, event.end_stream))
        if event.end_stream:
            out.append(StreamEnded(stream_id))

    def _stream_closed(self, event: ngh2.StreamClosed, out: list[Event]) -> None:
        stream_id = event.stream_id
        if self._upgrades:
            self._upgrades.pop(stream_id, None)
        was_open = stream_id in self._open
        self._open.discard(stream_id)
        declared_length = stream_id in self._declared_length
        self._declared_length.discard(stream_id)
        if stream_id in self._local_resets:
            self._local_resets.discard(stream_id)
        elif event.error_code == ErrorCodes.PROTOCOL_ERROR and was_open and declared_length:
            # An accepted request with a content-length that libnghttp2 resets: its DATA did
            # not add up to the length (RFC 9113 8.1.1). Envoy resets just that stream.
            out.append(StreamReset(stream_id, event.error_code, False))
        elif event.error_code == ErrorCodes.PROTOCOL_ERROR and not self.closed:
            # libnghttp2 reset a malformed message (RFC 9113 8.1.1). Envoy's default
            # (Http2ProtocolOptions.override_stream_error_on_invalid_http_messaging unset)
            # terminates the whole connection with PROTOCOL_ERROR, so do we.
            out.extend(self._failed(f"invalid HTTP/2 message on stream {stream_id}",
                                    ErrorCodes.PROTOCOL_ERROR))
        elif event.error_code:
            out.append(StreamReset(stream_id, event.error_code, False))

    def _connection_closed(self, event: ngh2.ConnectionClosed, out: list[Event]) -> None:
        if self.closed or self._remote_goaway:
            return
        if event.error_code:
            self.closed = True
            reason = event.debug_data.decode("latin-1", "replace")
            out.append(ProtocolFailed(f"HTTP/2 protocol error: {reason}", event.error_code))

    # --- sending -----------------------------------------------------------------------------

    def send_request_head(self, head: RequestHead, *, end_stream: bool) -> int:
        """Open a stream with this request; returns its id (assigned by the codec)."""
        protocol = ""
        if head.method == "CONNECT":
            block: list[ngh2.Header] = [(b":method", b"CONNECT"),
                                        (b":authority", head.authority.encode("latin-1"))]
        elif head.upgrade:
            # RFC 8441: an HTTP/1.1 upgrade travels as extended CONNECT (Envoy
            # transformUpgradeRequestFromH1toH2); the method is lost, GET is assumed back.
            protocol = head.headers.get("upgrade") or head.upgrade
            block = [(b":method", b"CONNECT"), (b":protocol", protocol.encode("latin-1")),
                     (b":scheme", (head.scheme or "http").encode("latin-1")),
                     (b":authority", head.authority.encode("latin-1")),
                     (b":path", head.path.encode("latin-1"))]
        else:
            block = [(b":method", head.method.encode("latin-1")),
                     (b":scheme", (head.scheme or "http").encode("latin-1")),
                     (b":authority", head.authority.encode("latin-1")),
                     (b":path", head.path.encode("latin-1"))]
        block.extend(_regular(head.headers))
        if protocol:
            # nghttp2 refuses an extended CONNECT with a content-length (Envoy drops "0").
            block = [field for field in block if field != (b"content-length", b"0")]
        try:
            stream_id = self.conn.send_request(block, end_stream=end_stream)
        except ngh2.NGH2Error as error:
            # Shutting down (GOAWAY either way) or out of stream ids: the caller retries
            # elsewhere, as for REFUSED_STREAM (RFC 9113 8.7).
            raise StreamRefusedError(str(error)) from error
        self._open.add(stream_id)
        if protocol:
            self._upgrades[stream_id] = protocol
        return stream_id

    def send_response_head(self, stream_id: int, head: ResponseHead, *, end_stream: bool) -> None:
        if head.status == 101:
            head = _upgrade_response(head)
        block: list[ngh2.Header] = [(b":status", str(head.status).encode())]
        block.extend(_regular(head.headers))
        try:
            self.conn.send_response(stream_id, block, end_stream=end_stream)
        except ngh2.NGH2Error:
            self._gone(stream_id)

    def answer_unopened(self, stream_id: int, head: ResponseHead, body: bytes) -> None:
        """Answer a stream whose request headers never completed (request_headers_timeout)
        and reset it with NO_ERROR, the answer going out first (libnghttp2 would drop frames
        queued before a reset of their stream)."""
        block: list[ngh2.Header] = [(b":status", str(head.status).encode())]
        block.extend(_regular(head.headers))
        try:
            self.conn.send_response(stream_id, block, end_stream=not body)
            if body:
                self.conn.send_data(stream_id, body, end_stream=True)
            self._pending += self.conn.data_to_send()
        except ngh2.NGH2Error:
            return
        self._send_reset(stream_id, ErrorCodes.NO_ERROR)

    def send_trailers(self, stream_id: int, trailers: Headers) -> None:
        try:
            self.conn.send_trailers(stream_id, _regular(trailers))
        except ngh2.NGH2Error:
            self._gone(stream_id)

    def _gone(self, stream_id: int) -> None:
        """A send found the stream reset or the connection terminating: libnghttp2 already
        dropped it; the owner learns from the StreamReset / ProtocolFailed it also gets.
        Nothing more is sent on it."""
        self._open.discard(stream_id)

    def sendable(self, stream_id: int) -> int:
        """How many DATA bytes may be handed to the codec now on `stream_id` without queuing
        beyond the peer's windows; -1 once the stream is closed."""
        if stream_id not in self._open:
            return -1
        conn = self.conn
        try:
            try:
                stream_window = conn.stream_remote_window_size(stream_id)
            except ngh2.StreamUnavailableError:
                # Not on the wire yet (libnghttp2 creates the stream when its HEADERS go out).
                stream_window = conn.remote_settings.get(_SETTING_INITIAL_WINDOW,
                                                         _DEFAULT_INITIAL_WINDOW)
            window = min(stream_window, conn.remote_window_size)
            return max(0, min(window - conn.queued_body_size(stream_id), _MAX_CHUNK))
        except ngh2.NGH2Error:  # the connection is terminating
            self._gone(stream_id)
            return -1

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool) -> None:
        try:
            self.conn.send_data(stream_id, data, end_stream=end_stream)
        except ngh2.NGH2Error:
            self._gone(stream_id)

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Return `length` bytes of window to the peer once they left our buffers (also for a
        stream already closed: the connection window still counts them)."""
        if length > 0 and not self.closed:
            try:
                self.conn.acknowledge_received_data(length, stream_id)
            except ngh2.NGH2Error:
                pass

    def reset(self, stream_id: int, code: int = ErrorCodes.CANCEL) -> None:
        """RST_STREAM a stream that is still open (a closed one needs nothing)."""
        if stream_id in self._open:
            self._open.discard(stream_id)
            self._send_reset(stream_id, code)

    def _send_reset(self, stream_id: int, code: int) -> None:
        self._local_resets.add(stream_id)  # our reset: its StreamClosed is not reported again
        try:
            self.conn.reset_stream(stream_id, int(code))
        except ngh2.NGH2Error:
            self._local_resets.discard(stream_id)

    def stream_open(self, stream_id: int) -> bool:
        return stream_id in self._open

    def graceful_goaway(self) -> None:
        """Queue a GOAWAY NO_ERROR naming the last stream we took (RFC 9113 6.8): the streams
        in flight still finish, new ones are refused."""
        if not self.closed:
            try:
                self.conn.send_goaway(0)
            except ngh2.NGH2Error:
                pass

    def shutdown_notice(self) -> None:
        """Queue a GOAWAY NO_ERROR with the last stream id 2^31-1 (RFC 9113 6.8: the
        connection is going away; streams keep working until the final GOAWAY), as Envoy
        starts closing an HTTP/2 connection."""
        if not self.closed:
            try:
                self.conn.send_shutdown_notice()
            except ngh2.NGH2Error:
                pass

    def close(self, error_code: int = 0) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.conn.terminate_connection(int(error_code))
            except ngh2.NGH2Error:
                pass

    @property
    def peer_max_concurrent_streams(self) -> int:
        try:
            settings = self.conn.remote_settings
        except ngh2.NGH2Error:  # the connection is terminating: no new streams
            return 0
        return settings.get(_SETTING_MAX_STREAMS, DEFAULT_MAX_CONCURRENT_STREAMS)
