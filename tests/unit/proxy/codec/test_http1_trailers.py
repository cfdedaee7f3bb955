"""HTTP/1.1 trailers (Envoy Http1ProtocolOptions.enable_trailers): dropped unless enabled,
then parsed from and written into the last chunk (RFC 9112 section 7.1.2)."""

from __future__ import annotations

import pytest

from proxy.codec.events import (
    DataReceived,
    RequestReceived,
    ResponseReceived,
    StreamEnded,
    TrailersReceived,
)
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http1 import Http1ClientCodec, Http1ServerCodec

REQUEST = (b"POST /p HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nte: trailers\r\n\r\n"
           b"3\r\nabc\r\n0\r\nx-checksum: 42\r\nx-more: 1\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n")


def _one_byte_at_a_time(codec: Http1ServerCodec | Http1ClientCodec, data: bytes) -> list[object]:
    events: list[object] = []
    for index in range(len(data)):
        events.extend(codec.receive_data(data[index:index + 1]))
    return events


@pytest.mark.parametrize("enabled", [False, True])
def test_request_trailers_are_kept_only_when_enabled(enabled: bool) -> None:
    events = _one_byte_at_a_time(Http1ServerCodec(enable_trailers=enabled), REQUEST)
    kinds = [type(event) for event in events]
    trailers = [list(e.trailers) for e in events if isinstance(e, TrailersReceived)]
    if enabled:
        assert trailers == [[("x-checksum", "42"), ("x-more", "1")]]
        assert kinds[-2:] == [TrailersReceived, StreamEnded]
    else:
        assert trailers == []
    head = next(e for e in events if isinstance(e, RequestReceived)).head
    assert "x-checksum" not in head.headers and head.headers.get("te") == "trailers"
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"abc"


@pytest.mark.parametrize("enabled", [False, True])
def test_response_trailers_are_kept_only_when_enabled(enabled: bool) -> None:
    codec = Http1ClientCodec(enable_trailers=enabled)
    codec.encode_request_head(RequestHead("GET", "/", "x", "http", Headers()), end_stream=True)
    events = _one_byte_at_a_time(codec, RESPONSE)
    trailers = [list(e.trailers) for e in events if isinstance(e, TrailersReceived)]
    assert trailers == ([[("grpc-status", "0")]] if enabled else [])
    assert isinstance(events[0], ResponseReceived) and isinstance(events[-1], StreamEnded)
    assert codec.response_complete


def _chunked_response(codec: Http1ServerCodec) -> bytes:
    codec.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    head = codec.encode_response_head(ResponseHead(200, Headers()), end_stream=False)
    assert b"transfer-encoding: chunked" in head
    return codec.encode_data(b"ok", end_stream=False)


def test_response_trailers_go_into_the_last_chunk_when_enabled() -> None:
    codec = Http1ServerCodec(enable_trailers=True)
    assert _chunked_response(codec) == b"2\r\nok\r\n"
    assert codec.encode_trailers(Headers([("grpc-status", "0"), ("grpc-message", "fine")])) \
        == b"0\r\ngrpc-status: 0\r\ngrpc-message: fine\r\n\r\n"


def test_response_trailers_are_dropped_by_default() -> None:
    codec = Http1ServerCodec()
    _chunked_response(codec)
    assert codec.encode_trailers(Headers([("grpc-status", "0")])) == b"0\r\n\r\n"


def test_a_content_length_body_has_no_room_for_trailers() -> None:
    codec = Http1ServerCodec(enable_trailers=True)
    codec.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    codec.encode_response_head(ResponseHead(200, Headers([("content-length", "2")])),
                               end_stream=False)
    assert codec.encode_data(b"ok", end_stream=False) == b"ok"
    assert codec.encode_trailers(Headers([("grpc-status", "0")])) == b""


@pytest.mark.parametrize(("enabled", "last"), [
    (True, b"0\r\nx-checksum: 42\r\n\r\n"), (False, b"0\r\n\r\n")])
def test_request_trailers_towards_the_upstream(enabled: bool, last: bytes) -> None:
    codec = Http1ClientCodec(enable_trailers=enabled)
    head = codec.encode_request_head(RequestHead("POST", "/", "x", "http", Headers()),
                                     end_stream=False)
    assert b"transfer-encoding: chunked" in head
    assert codec.encode_data(b"abc", end_stream=False) == b"3\r\nabc\r\n"
    assert codec.encode_trailers(Headers([("x-checksum", "42")])) == last
