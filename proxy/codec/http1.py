"""HTTP/1.1 codecs over httptools (llhttp), sans-I/O: bytes in, events out; heads in, bytes out.

llhttp in strict mode already refuses the request-smuggling shapes (RFC 9112 section 6.3:
Content-Length with Transfer-Encoding, duplicate Content-Length, obs-fold, bare LF, bad token
and value characters). On top of it we enforce Envoy's limits and rules:
`max_request_headers_kb` (431), `max_headers_count` (431), HTTP/1.0 refused with 426 unless
accepted, and a Transfer-Encoding other than `chunked` refused with 501 (Envoy
`http1.invalid_transfer_encoding`). A missing Host is the connection manager's to refuse.

Trailers (Envoy Http1ProtocolOptions.enable_trailers, core/v3/protocol.proto): off by default,
so trailers received after a chunked body are dropped and trailers to send end the chunked
body without them; when on, received trailers become a TrailersReceived event and trailers to
send go into the last chunk (RFC 9112 section 7.1.2). A body framed by Content-Length has no
place for trailers: they are dropped.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import httptools

from proxy.codec.events import (
    DataReceived,
    Event,
    InformationalReceived,
    ProtocolFailed,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
    TunnelEstablished,
)
from proxy.codec.headers import Headers, RequestHead, ResponseHead

# RFC 9110 section 7.6.1: connection-specific fields a proxy must not forward.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te",
    "http2-settings",
})

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 206: "Partial Content", 301: "Moved Permanently", 302: "Found",
    303: "See Other", 304: "Not Modified", 307: "Temporary Redirect", 308: "Permanent Redirect",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 413: "Payload Too Large",
    418: "I'm a teapot", 426: "Upgrade Required", 429: "Too Many Requests",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


_FRAMING = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection"})


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _LastRequest(Exception):
    """A request that closes the connection (`connection: close`, HTTP/1.0 without
    keep-alive) has ended: what the client sends after it is not parsed (Envoy stops reading
    there; a stray byte must not turn the pending answer into a 400)."""


@dataclass
class _Pending:
    """What the response framing needs to know about a request in flight (pipelining safe)."""

    method: str
    http10: bool
    keep_alive: bool


def _latin1(value: bytes) -> str:
    return value.decode("latin-1")


def _last_chunk(trailers: Headers | None) -> bytes:
    """The last chunk, with a trailer section when there are trailers (RFC 9112 7.1.2)."""
    if not trailers:
        return b"0\r\n\r\n"
    lines = "".join(f"{name}: {value}\r\n" for name, value in trailers)
    return b"0\r\n" + lines.encode("latin-1") + b"\r\n"


class Http1ServerCodec:
    """Downstream side: parses requests, frames responses. Stream ids count requests 1, 2, ..."""

    def __init__(self, *, scheme: str = "http", max_header_bytes: int = 60 * 1024,
                 max_headers_count: int = 100, accept_http_10: bool = False,
                 default_host_for_http_10: str = "", enable_trailers: bool = False,
                 allow_absolute_url: bool = True) -> None:
        self.scheme = scheme
        self.allow_absolute_url = allow_absolute_url
        self.enable_trailers = enable_trailers
        self._trailers: list[tuple[str, str]] | None = None  # set once the head is parsed
        self.max_header_bytes = max_header_bytes
        self.max_headers_count = max_headers_count
        self.accept_http_10 = accept_http_10
        self.default_host_for_http_10 = default_host_for_http_10
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._url = bytearray()
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._stream_id = 0
        self._upgrading = False
        self._tunnel = False
        self.failed = False
        self.last_request_read = False
        self.pending: deque[_Pending] = deque()
        self._response_chunked = False
        self.close_after_response = False
        # The response being written answers a request that itself asked to close
        # (`connection: close`, HTTP/1.0 without keep-alive).
        self.client_asked_close = False
        # A request head is being received: from its first byte to its last (the HCM's
        # request_headers_timeout runs in between).
        self.receiving_head = False

    # --- parsing ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        if self._tunnel:
            return [DataReceived(self._stream_id, data)] if data else []
        if self.failed or self.last_request_read:
            return []
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = int(upgrade.args[0])
            self._tunnel = True
            self._events.append(TunnelEstablished(self._stream_id, data[offset:]))
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if not isinstance(cause, _LastRequest):
                self._fail(cause.status if isinstance(cause, _Refused) else 400,
                           str(cause or error))
        except httptools.HttpParserError as error:
            self._fail(400, str(error))
        events, self._events = self._events, []
        return events

    def _fail(self, status: int, reason: str) -> None:
        self.failed = True
        self._events.append(ProtocolFailed(reason, status))

    def _count(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            raise _Refused(431, "headers exceed max_request_headers_kb")

    def on_message_begin(self) -> None:
        self.receiving_head = True
        self._url.clear()
        self._headers = []
        self._trailers = None
        self._header_bytes = 0
        self._stream_id += 1

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if self._trailers is not None:  # after a chunked body: a trailer field
            self._trailers.append((_latin1(name).lower(), _latin1(value)))
            return
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
        if len(self._headers) > self.max_headers_count:
            raise _Refused(431, "too many headers")

    def on_headers_complete(self) -> None:
        self.receiving_head = False
        self._trailers = []
        head = self._request_head()
        self._upgrading = bool(head.upgrade)
        self.pending.append(_Pending(head.method, head.protocol == "HTTP/1.0",
                                     self._parser.should_keep_alive()))
        self._events.append(RequestReceived(self._stream_id, head, end_stream=False))

    def _request_head(self) -> RequestHead:
        method = self._parser.get_method().decode("ascii")
        version = self._parser.get_http_version()
        # Envoy answers any version but 1.1 with 426 (and 1.0 too unless accept_http_10).
        if version != "1.1" and not (version == "1.0" and self.accept_http_10):
            raise _Refused(426, f"HTTP/{version} is not accepted")
        headers = Headers(self._headers)
        encodings = headers.get_all("transfer-encoding")
        if encodings and [e.strip().lower() for e in encodings] != ["chunked"]:
            raise _Refused(501, "unsupported transfer-encoding")
        authority = headers.get_all("host")
        if len(authority) > 1:
            raise _Refused(400, "duplicate host")
        target = bytes(self._url).decode("latin-1")
        host = authority[0] if authority else ""
        if method == "CONNECT":
            path, host = "", target
        elif target.startswith("/") or target == "*" or not self.allow_absolute_url:
            path = target  # without allow_absolute_url Envoy keeps any target as the :path
        else:
            url = httptools.parse_url(self._url)  # absolute-form (RFC 9112 section 3.2.2)
            # Each part may be None, whatever httptools' stubs say: read untyped, since mypyc
            # (`make compiled`) checks a typed attribute's value as it reads it.
            port: int | None = getattr(url, "port")  # noqa: B009
            query: bytes | None = getattr(url, "query")  # noqa: B009
            url_host: bytes | None = getattr(url, "host")  # noqa: B009
            url_path: bytes | None = getattr(url, "path")  # noqa: B009
            host = _latin1(url_host or b"") + (f":{port}" if port else "")
            path = _latin1(url_path or b"/") + (f"?{_latin1(query)}" if query else "")
        if not host and version == "1.0" and self.default_host_for_http_10:
            host = self.default_host_for_http_10  # else empty: the HCM answers 400
        upgrade = ""
        connection = {t.strip().lower() for t in (headers.joined("connection") or "").split(",")}
        if method == "CONNECT":
            upgrade = "connect"
        elif "upgrade" in connection and headers.get("upgrade"):
            upgrade = (headers.get("upgrade") or "").lower()
        te_trailers = (headers.get("te") or "").strip().lower() == "trailers"
        stripped = HOP_BY_HOP | connection - {"close", "keep-alive", ""}
        headers.remove_all(stripped - {"upgrade", "connection"} if upgrade else stripped)
        if te_trailers:
            headers.add("te", "trailers")  # the one TE value a proxy forwards (gRPC)
        headers.remove("host")
        return RequestHead(method=method, path=path, authority=host, scheme=self.scheme,
                           headers=headers, protocol=f"HTTP/{version}", upgrade=upgrade)

    def on_body(self, body: bytes) -> None:
        self._events.append(DataReceived(self._stream_id, bytes(body)))

    def on_message_complete(self) -> None:
        if not self._upgrading:
            if self._trailers and self.enable_trailers:
                self._events.append(TrailersReceived(self._stream_id, Headers(self._trailers)))
            self._events.append(StreamEnded(self._stream_id))
            if not self._parser.should_keep_alive():
                self.last_request_read = True
                raise _LastRequest

    # --- framing responses --------------------------------------------------------------------

    def encode_response_head(self, head: ResponseHead, *, end_stream: bool) -> bytes:
        """The status line and headers; chooses content-length, chunked or close framing."""
        request = self.pending[0] if self.pending else _Pending("GET", False, False)
        headers = head.headers.copy()
        headers.remove_all(_FRAMING)
        no_body = (request.method == "HEAD" or head.status in (204, 304)
                   or 100 <= head.status < 200)
        self._response_chunked = False
        self.client_asked_close = not request.keep_alive
        keep_alive = request.keep_alive and not self.close_after_response
        tunnel = request.method == "CONNECT" and 200 <= head.status < 300
        if head.status == 101:
            headers.set("connection", "upgrade")
        elif tunnel:
            # RFC 9110 9.3.6: a 2xx to CONNECT has no framing; the tunnel follows.
            headers.remove_all({"content-length"})
            keep_alive = True
        elif not no_body and "content-length" not in headers:
            if end_stream:
                headers.add("content-length", "0")
            elif request.http10:
                keep_alive = False  # RFC 9112 section 6.3: delimit by closing
            else:
                headers.add("transfer-encoding", "chunked")
                self._response_chunked = True
        if head.status != 101 and not tunnel and not keep_alive:
            headers.set("connection", "close")
            self.close_after_response = True
        version = "HTTP/1.0" if request.http10 else "HTTP/1.1"
        reason = head.reason or REASONS.get(head.status, "Unknown")
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
        return f"{version} {head.status} {reason}\r\n{fields}\r\n".encode("latin-1")

    def encode_data(self, data: bytes, *, end_stream: bool) -> bytes:
        if not self._response_chunked:
            return data
        out = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        return out + b"0\r\n\r\n" if end_stream else out

    def encode_trailers(self, trailers: Headers) -> bytes:
        """End the response with `trailers` (in the last chunk if enabled and chunked)."""
        if not self._response_chunked:
            return b""
        return _last_chunk(trailers if self.enable_trailers else None)

    def response_complete(self) -> None:
        """The current response is fully written: the next pipelined request may answer."""
        if self.pending:
            self.pending.popleft()


# Requests of these methods should have no body: no `content-length: 0` is sent for them.
_BODILESS_METHODS = frozenset({"GET", "HEAD", "DELETE", "TRACE", "CONNECT"})

# Room for the status line in the raw bound on a head still arriving (Http1ClientCodec).
_STATUS_LINE_ALLOWANCE = 8 * 1024


class Http1ClientCodec:
    """Upstream side of one HTTP/1.1 connection: one request at a time (no pipelining).

    A response ends at its framing (RFC 9112 section 6.3): Content-Length, the last chunk, or,
    for a body with neither, the upstream's close. A close anywhere else after the first byte
    of the response is a truncated answer, a protocol error (ProtocolFailed), as Envoy's codec
    finds it (llhttp at EOF); a close before any byte of it is a plain connection termination
    (no event: the pool says so). The head is held to Envoy's limits for upstream responses:
    `max_headers_kb` (common_http_protocol_options.max_response_headers_kb, 60 KiB of names and
    values) and `max_headers_count` (100); past either it is a protocol error too. The limits
    are checked once the head is parsed, and while a head is still arriving its raw bytes are
    bounded, so nothing is counted per header on the request path."""

    def __init__(self, *, enable_trailers: bool = False, max_header_bytes: int = 60 * 1024,
                 max_headers_count: int = 100) -> None:
        self.enable_trailers = enable_trailers
        self.max_header_bytes = max_header_bytes
        self.max_headers_count = max_headers_count
        self._parser = httptools.HttpResponseParser(self)
        self._events: list[Event] = []
        self._headers: list[tuple[str, str]] = []
        self._head_bytes = 0  # raw bytes of a head still arriving (status line and CRLFs too)
        self._feeding = 0  # the size of the chunk being parsed
        self._trailer_bytes = 0
        self._trailers: list[tuple[str, str]] | None = None
        self._method = "GET"
        self._request_chunked = False
        self._head_seen = False
        self._complete = False
        self._ended_by_head = False
        self._close_delimited = False  # the body of the current response ends at the close
        self._in_message = False  # between the first byte of a response and its end
        self.keep_alive = True
        self.failed = False
        self.tunnel = False
        self.stream_id = 0

    def encode_request_head(self, head: RequestHead, *, end_stream: bool) -> bytes:
        self.stream_id += 1
        if self._ended_by_head:
            self._parser = httptools.HttpResponseParser(self)
            self._ended_by_head = False
        self._method = head.method
        self._head_seen = self._complete = False
        self._head_bytes = 0
        headers = head.headers.copy()
        self._request_chunked = False
        target = head.path
        if head.method == "CONNECT":
            target = head.authority
        elif head.upgrade:
            headers.set("connection", "upgrade")
            headers.set("upgrade", head.upgrade)
        elif "content-length" not in headers and not end_stream:
            headers.add("transfer-encoding", "chunked")
            self._request_chunked = True
        elif "content-length" not in headers and head.method not in _BODILESS_METHODS:
            # Envoy's codec states an empty body (codec_impl.cc encodeHeaders), except for the
            # methods whose requests should have none (HeaderUtility::requestShouldHaveNoBody;
            # tests/conformance/proxy/http/test_empty_body_vs_envoy.py).
            headers.add("content-length", "0")
        fields = "".join([f"{name}: {value}\r\n" for name, value in headers])
        return f"{head.method} {target} HTTP/1.1\r\nhost: {head.authority}\r\n{fields}\r\n" \
            .encode("latin-1")

    def encode_data(self, data: bytes, *, end_stream: bool) -> bytes:
        if not self._request_chunked:
            return data
        out = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        return out + b"0\r\n\r\n" if end_stream else out

    def encode_trailers(self, trailers: Headers) -> bytes:
        """End the request with `trailers` (in the last chunk if enabled and chunked)."""
        if not self._request_chunked:
            return b""
        return _last_chunk(trailers if self.enable_trailers else None)

    def receive_data(self, data: bytes) -> list[Event]:
        if self.tunnel:
            return [DataReceived(self.stream_id, data)] if data else []
        if self.failed:
            return []
        self._feeding = len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self.tunnel = True
            rest = data[int(upgrade.args[0]):]
            if rest:
                self._events.append(DataReceived(self.stream_id, rest))
        except httptools.HttpParserCallbackError as error:
            self._fail(str(error.__context__ or error))
        except httptools.HttpParserError as error:
            self._fail(str(error))
        if not self._head_seen and self._in_message and not self.failed:
            # A head still arriving: all of this chunk was head. Its names and values are at
            # most its raw size, and its raw size at most names, values, 4 bytes a field
            # (": ", CRLF) and a status line: past this bound it can only be too large.
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes + 4 * self.max_headers_count \
                    + _STATUS_LINE_ALLOWANCE:
                self._fail("response headers exceed max_response_headers_kb")
        events, self._events = self._events, []
        return events

    def _fail(self, reason: str) -> None:
        self.failed = True
        self.keep_alive = False
        self._events.append(ProtocolFailed(reason, 502))

    def receive_eof(self) -> list[Event]:
        """The upstream closed: the end of a close-delimited body; a protocol error in the
        middle of any other response message (truncated); nothing between messages."""
        self.keep_alive = False
        if self._complete or self.tunnel or self.failed:
            return []
        if self._head_seen and self._close_delimited:
            self._complete = True
            return [StreamEnded(self.stream_id)]
        if self._in_message:
            self.failed = True
            return [ProtocolFailed("upstream closed before the end of the response", 502)]
        return []

    @property
    def response_complete(self) -> bool:
        return self._complete

    def on_message_begin(self) -> None:
        self._in_message = True
        self._headers = []
        self._trailers = None

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._trailers is not None:  # after a chunked body: a trailer field
            self._trailer(name, value)
            return
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def _trailer(self, name: bytes, value: bytes) -> None:
        # Envoy holds trailers to the same limits as the head.
        self._trailer_bytes += len(name) + len(value)
        if self._trailer_bytes > self.max_header_bytes \
                or len(self._trailers or ()) >= self.max_headers_count:
            raise _Refused(502, "response trailers exceed the header limits")
        assert self._trailers is not None
        self._trailers.append((_latin1(name).lower(), _latin1(value)))

    def _check_head_limits(self) -> None:
        if len(self._headers) > self.max_headers_count:
            raise _Refused(502, "response headers exceed max_headers_count")
        # Only a head that, with the chunk it ends in, could be that large is counted.
        if self._head_bytes + self._feeding > self.max_header_bytes and sum(
                len(name) + len(value) for name, value in self._headers) > self.max_header_bytes:
            raise _Refused(502, "response headers exceed max_response_headers_kb")

    def on_headers_complete(self) -> None:
        self._check_head_limits()
        status = self._parser.get_status_code()
        headers = Headers(self._headers)
        if 100 <= status < 200 and status != 101:
            self._events.append(InformationalReceived(self.stream_id, ResponseHead(status,
                                                                                   headers)))
            return
        self._head_seen = True
        self._trailers = []
        self._trailer_bytes = 0
        self.keep_alive = self._parser.should_keep_alive()
        # RFC 9112 6.3: without Content-Length or chunked coding the body ends at the close.
        # llhttp keeps a connection alive only when the message does not need the close to
        # end (llhttp_should_keep_alive): the framing is looked at only when it says close.
        self._close_delimited = not self.keep_alive and (
            "content-length" not in headers
            and "chunked" not in (headers.joined("transfer-encoding") or "").lower())
        connection = {t.strip().lower() for t in (headers.joined("connection") or "").split(",")}
        stripped = HOP_BY_HOP | connection - {"close", "keep-alive", ""}
        headers.remove_all(stripped - {"upgrade", "connection"} if status == 101 else stripped)
        self._events.append(ResponseReceived(self.stream_id, ResponseHead(status, headers),
                                             end_stream=False))
        if self._method == "HEAD":
            # A response to HEAD has no body whatever its Content-Length (RFC 9110 9.3.2).
            self._finish()
            self._ended_by_head = True

    def on_body(self, body: bytes) -> None:
        self._events.append(DataReceived(self.stream_id, bytes(body)))

    def on_message_complete(self) -> None:
        self._in_message = False
        if not self._head_seen or self._ended_by_head:
            return
        if self._parser.get_status_code() == 101:
            return
        if self._trailers and self.enable_trailers and not self._complete:
            self._events.append(TrailersReceived(self.stream_id, Headers(self._trailers)))
        self._finish()

    def _finish(self) -> None:
        if not self._complete:
            self._complete = True
            self._events.append(StreamEnded(self.stream_id))
