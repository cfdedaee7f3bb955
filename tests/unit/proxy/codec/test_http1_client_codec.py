"""The upstream HTTP/1.1 codec: where a response ends (its framing, not the close) and Envoy's
limits on response heads (60 KiB of names and values, 100 fields), without sockets."""

from __future__ import annotations

import pytest

from proxy.codec.events import ProtocolFailed, ResponseReceived, StreamEnded
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http1 import Http1ClientCodec


def _codec() -> Http1ClientCodec:
    codec = Http1ClientCodec()
    codec.encode_request_head(RequestHead("GET", "/", "a", "http", Headers()), end_stream=True)
    return codec


def _feed(codec: Http1ClientCodec, data: bytes, chunk: int) -> list[object]:
    events: list[object] = []
    for start in range(0, len(data), chunk):
        events += codec.receive_data(data[start:start + chunk])
    return events


def _head(fields: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields)
    return f"HTTP/1.1 200 OK\r\n{lines}content-length: 0\r\n\r\n".encode()


@pytest.mark.parametrize("chunk", [1, 1000, 1 << 20])
def test_a_head_at_the_limits_passes(chunk: int) -> None:
    fields = [(f"x-{i:02d}", "v" * 600) for i in range(99)]  # 99 + content-length = 100
    assert sum(len(n) + len(v) for n, v in fields) + len("content-length") + 1 <= 60 * 1024
    events = _feed(_codec(), _head(fields), chunk)
    assert [type(event) for event in events] == [ResponseReceived, StreamEnded]


@pytest.mark.parametrize("chunk", [1, 1000, 1 << 20])
def test_a_field_more_than_max_headers_count_is_a_protocol_error(chunk: int) -> None:
    events = _feed(_codec(), _head([(f"x-{i:03d}", "v") for i in range(100)]), chunk)
    assert [type(event) for event in events] == [ProtocolFailed]


@pytest.mark.parametrize("chunk", [1, 1000, 1 << 20])
def test_a_head_over_60_kib_is_a_protocol_error(chunk: int) -> None:
    fields = [(f"x-{i:02d}", "v" * 1300) for i in range(50)]  # 65,200 bytes of values
    events = _feed(_codec(), _head(fields), chunk)
    assert [type(event) for event in events] == [ProtocolFailed]


def test_a_head_that_never_ends_is_refused_while_it_arrives() -> None:
    codec = _codec()
    events = codec.receive_data(b"HTTP/1.1 200 OK\r\nx-big: ")
    for _ in range(80):  # 80 KiB of one header value, no end in sight
        events += codec.receive_data(b"v" * 1024)
        if events:
            break
    assert [type(event) for event in events] == [ProtocolFailed]
    assert codec.failed


@pytest.mark.parametrize(("response", "ends"), [
    (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n01234", ProtocolFailed),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n", ProtocolFailed),
    (b"HTTP/1.1 200 OK\r\ncontent-le", ProtocolFailed),
    (b"HTTP/1.1 200 OK\r\n\r\nends at the close", StreamEnded),
    (b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nends at the close", StreamEnded),
    (b"HTTP/1.1 100 Continue\r\n\r\n", None),  # between messages: a plain termination
])
def test_the_close_ends_only_a_close_delimited_body(response: bytes,
                                                    ends: type | None) -> None:
    codec = _codec()
    codec.receive_data(response)
    events = codec.receive_eof()
    assert [type(event) for event in events] == ([ends] if ends else [])


@pytest.mark.parametrize(("method", "stated"), [
    ("GET", False), ("HEAD", False), ("DELETE", False), ("TRACE", False),
    ("OPTIONS", True), ("POST", True), ("PUT", True), ("PATCH", True), ("PROPFIND", True)])
def test_an_empty_request_body_is_stated_unless_the_method_should_have_none(
        method: str, stated: bool) -> None:
    """Envoy's HTTP/1.1 codec (HeaderUtility::requestShouldHaveNoBody); a body or a
    content-length of the request's own is left alone."""
    codec = Http1ClientCodec()
    wire = codec.encode_request_head(RequestHead(method, "/", "a", "http", Headers()),
                                     end_stream=True)
    assert (b"\r\ncontent-length: 0\r\n" in wire) is stated
    chunked = Http1ClientCodec().encode_request_head(
        RequestHead(method, "/", "a", "http", Headers()), end_stream=False)
    assert b"content-length" not in chunked and b"transfer-encoding: chunked" in chunked
    own = Http1ClientCodec().encode_request_head(
        RequestHead(method, "/", "a", "http", Headers([("content-length", "3")])),
        end_stream=True)
    assert own.count(b"content-length") == 1
