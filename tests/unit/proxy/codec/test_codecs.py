"""The HTTP/1.1 codec without sockets: framing, tiny chunks, and Hypothesis fuzzing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.codec.events import (
    DataReceived,
    ProtocolFailed,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
)
from proxy.codec.headers import Headers, ResponseHead
from proxy.codec.http1 import Http1ClientCodec, Http1ServerCodec

REQUEST = (b"POST /upload?x=1 HTTP/1.1\r\nHost: Example.com\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: keep-alive, x-hop\r\nX-Hop: 1\r\nX-Keep: 2\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")


def _feed(codec: Http1ServerCodec, data: bytes, size: int) -> list[object]:
    events: list[object] = []
    for offset in range(0, len(data), size):
        events.extend(codec.receive_data(data[offset:offset + size]))
    return events


def test_request_parsed_identically_from_one_byte_chunks() -> None:
    for size in (1, 3, len(REQUEST)):
        events = _feed(Http1ServerCodec(), REQUEST, size)
        head = next(e for e in events if isinstance(e, RequestReceived)).head
        assert (head.method, head.path, head.authority) == ("POST", "/upload?x=1", "Example.com")
        # hop-by-hop and Connection-listed headers are not forwarded (RFC 9110 7.6.1)
        assert head.headers.get("x-hop") is None and head.headers.get("x-keep") == "2"
        assert head.headers.get("transfer-encoding") is None
        body = b"".join(e.data for e in events if isinstance(e, DataReceived))
        assert body == b"hello world"
        assert isinstance(events[-1], StreamEnded)


def test_response_framing_follows_the_request() -> None:
    codec = Http1ServerCodec()
    codec.receive_data(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    head = codec.encode_response_head(ResponseHead(200, Headers()), end_stream=False)
    assert b"transfer-encoding: chunked" in head
    assert codec.encode_data(b"abc", end_stream=True) == b"3\r\nabc\r\n0\r\n\r\n"
    codec.response_complete()
    codec.receive_data(b"HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    head = codec.encode_response_head(ResponseHead(200, Headers([("content-length", "9")])),
                                      end_stream=False)
    assert b"connection: close" in head and codec.close_after_response


def test_client_codec_head_response_has_no_body() -> None:
    from proxy.codec.headers import RequestHead

    client = Http1ClientCodec()
    client.encode_request_head(RequestHead("HEAD", "/", "a"), end_stream=True)
    events = client.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(events[0], ResponseReceived) and isinstance(events[-1], StreamEnded)
    client.encode_request_head(RequestHead("GET", "/", "a"), end_stream=True)
    events = client.receive_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [type(e).__name__ for e in events] == ["ResponseReceived", "DataReceived",
                                                  "StreamEnded"]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12)
_value = st.binary(max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes_never_crash(data: bytes) -> None:
    codec = Http1ServerCodec()
    events = codec.receive_data(data)
    for event in events:
        if isinstance(event, ProtocolFailed):
            assert event.status in (400, 426, 431, 501)
            assert codec.failed


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_token, _value), max_size=8), st.integers(1, 50))
def test_fuzz_header_values_are_accepted_or_refused_cleanly(headers: list[tuple[str, bytes]],
                                                            chunk: int) -> None:
    raw = b"GET / HTTP/1.1\r\nHost: a\r\n" + b"".join(
        name.encode() + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    events = _feed(Http1ServerCodec(), raw, chunk)
    accepted = [e for e in events if isinstance(e, RequestReceived)]
    refused = [e for e in events if isinstance(e, ProtocolFailed)]
    assert len(accepted) + len(refused) >= 1
    for event in accepted:
        for _name, value in event.head.headers:
            # whatever passes holds no CR, LF or NUL: nothing to smuggle downstream
            assert not set(value) & {"\r", "\n", "\x00"}
