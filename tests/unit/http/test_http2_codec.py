"""The HTTP/2 codec without sockets: a request round trip, and Hypothesis-fuzzed frames."""

from __future__ import annotations

import struct

import h2.config
import h2.connection
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.http.events import (
    DataReceived,
    ProtocolFailed,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from proxy.http.headers import Headers, ResponseHead
from proxy.http.http2 import PREFACE, Http2Codec


def _server() -> Http2Codec:
    codec = Http2Codec(client_side=False)
    codec.initiate()
    codec.data_to_send()
    return codec


def _client_bytes(*, body: bytes = b"") -> tuple[h2.connection.H2Connection, bytes]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":authority", "a.test"),
                            (":path", "/p?q=1"), ("x-a", "1")], end_stream=not body)
    if body:
        client.send_data(1, body, end_stream=True)
    return client, client.data_to_send()


def test_request_and_response_round_trip_in_tiny_chunks() -> None:
    server = _server()
    client, wire = _client_bytes(body=b"hello")
    events = []
    for index in range(len(wire)):
        events.extend(server.receive_data(wire[index:index + 1]))
    request = next(e for e in events if isinstance(e, RequestReceived))
    assert (request.head.method, request.head.path, request.head.authority) == \
        ("POST", "/p?q=1", "a.test")
    assert request.head.headers.get("x-a") == "1"
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"hello"
    assert isinstance(events[-1], StreamEnded)
    server.send_response_head(1, ResponseHead(200, Headers([("x-b", "2"),
                                                            ("connection", "close")])),
                              end_stream=True)
    answers = client.receive_data(server.data_to_send())
    response = next(e for e in answers if type(e).__name__ == "ResponseReceived")
    # connection-specific headers never go out on HTTP/2 (RFC 9113 8.2.2)
    assert (b"connection", b"close") not in response.headers
    assert (b"x-b", b"2") in response.headers


def _frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream_id & 0x7FFFFFFF) + payload


_frames = st.lists(st.builds(_frame, st.integers(0, 10), st.integers(0, 255),
                             st.integers(0, 7), st.binary(max_size=64)), max_size=6)


@settings(max_examples=300, deadline=None)
@given(_frames)
def test_fuzzed_frames_end_in_events_or_a_clean_goaway(frames: list[bytes]) -> None:
    server = _server()
    _client, wire = _client_bytes()
    events = server.receive_data(wire + b"".join(frames))
    failed = [e for e in events if isinstance(e, ProtocolFailed)]
    if failed:
        assert server.closed
        assert server.data_to_send()  # the GOAWAY
        assert server.receive_data(b"\x00" * 9) == []  # nothing after the end
    for event in events:
        if isinstance(event, StreamReset):
            assert event.stream_id > 0


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_after_the_preface(data: bytes) -> None:
    server = _server()
    events = server.receive_data(PREFACE + data)
    assert all(not isinstance(e, RequestReceived) or e.head.path for e in events)
