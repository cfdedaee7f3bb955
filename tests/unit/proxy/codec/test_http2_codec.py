"""The HTTP/2 codec without sockets: a request round trip, and Hypothesis-fuzzed frames."""

from __future__ import annotations

import struct

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.codec.events import (
    DataReceived,
    ProtocolFailed,
    RequestReceived,
    StreamEnded,
    StreamReset,
)
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http2 import PREFACE, Http2Codec, StreamRefusedError


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


def _raw_client(headers: list[tuple[str, str]]) -> bytes:
    """Bytes of a client that skips its own header checks, to send malformed requests."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False))
    client.initiate_connection()
    client.send_headers(1, headers, end_stream=True)
    return client.data_to_send()


def test_malformed_request_ends_the_connection_like_envoy() -> None:
    # An upper-case field name makes the request malformed (RFC 9113 8.2.1); with Envoy's
    # default (override_stream_error_on_invalid_http_messaging unset) the connection ends
    # with GOAWAY PROTOCOL_ERROR and no RST_STREAM before it.
    server = _server()
    events = server.receive_data(_raw_client([(":method", "GET"), (":scheme", "http"),
                                              (":authority", "a"), (":path", "/"),
                                              ("X-Upper", "1")]))
    assert not any(isinstance(e, RequestReceived) for e in events)
    failed = [e for e in events if isinstance(e, ProtocolFailed)]
    assert failed and failed[0].status == 1  # PROTOCOL_ERROR
    wire = server.data_to_send()
    frame_types = []
    while wire:
        length = int.from_bytes(wire[:3], "big")
        frame_types.append(wire[3])
        wire = wire[9 + length:]
    assert frame_types == [0x7]  # GOAWAY only


def test_cookie_crumbs_are_joined_for_the_upstream() -> None:
    server = _server()
    events = server.receive_data(_raw_client([(":method", "GET"), (":scheme", "http"),
                                              (":authority", "a"), (":path", "/"),
                                              ("cookie", "a=1"), ("cookie", "b=2")]))
    request = next(e for e in events if isinstance(e, RequestReceived))
    assert request.head.headers.get("cookie") == "a=1; b=2"  # RFC 9113 8.2.3


def _connected_pair_with_a_post() -> tuple[Http2Codec, Http2Codec, int]:
    """A client and a server codec past their SETTINGS, the client with a POST open."""
    client = Http2Codec(client_side=True)
    client.initiate()
    server = Http2Codec(client_side=False)
    server.initiate()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    stream_id = client.send_request_head(
        RequestHead("POST", "/", "a", "http", Headers(), "HTTP/2"), end_stream=False)
    return client, server, stream_id


def test_sendable_follows_the_peer_window_and_what_is_queued() -> None:
    client, server, stream_id = _connected_pair_with_a_post()
    assert stream_id == 1
    # The server advertised a 1 MiB stream window; the connection window is RFC 9113's
    # 65,535 until the server's WINDOW_UPDATE arrives, which it did above.
    allowed = client.sendable(stream_id)
    assert 0 < allowed <= 1024 * 1024
    client.send_data(stream_id, b"x" * allowed, end_stream=False)
    assert client.sendable(stream_id) == 0  # everything the windows allow is queued
    events = server.receive_data(client.data_to_send())
    received = sum(len(e.data) for e in events if isinstance(e, DataReceived))
    assert received == allowed
    server.acknowledge(stream_id, received)
    client.receive_data(server.data_to_send())
    assert client.sendable(stream_id) > 0  # WINDOW_UPDATE reopened it
    client.reset(stream_id)
    assert client.sendable(stream_id) == -1


def test_sending_on_a_dead_stream_or_connection_never_raises_into_the_proxy() -> None:
    client, server, stream_id = _connected_pair_with_a_post()
    server.receive_data(client.data_to_send())
    server.reset(stream_id)
    client.receive_data(server.data_to_send())  # RST_STREAM reaches the client
    client.send_data(stream_id, b"late", end_stream=True)  # dropped, no exception
    client.send_trailers(stream_id, Headers([("x", "1")]))
    assert client.sendable(stream_id) == -1
    server.send_response_head(stream_id, ResponseHead(200), end_stream=True)  # ours, reset
    server.close(1)  # GOAWAY PROTOCOL_ERROR
    client.receive_data(server.data_to_send())
    with pytest.raises(StreamRefusedError):
        client.send_request_head(RequestHead("GET", "/", "a", "http", Headers(), "HTTP/2"),
                                 end_stream=True)


@settings(max_examples=300, deadline=None)
@given(_frames, st.integers(1, 64))
def test_fuzzed_frames_towards_the_upstream_side(frames: list[bytes], chunk: int) -> None:
    # The upstream (client) codec with a request in flight, fed random server frames in
    # random chunk sizes, answering what it can: events or a GOAWAY, never an exception.
    client = Http2Codec(client_side=True)
    client.initiate()
    stream_id = client.send_request_head(
        RequestHead("POST", "/", "a", "http", Headers(), "HTTP/2"), end_stream=False)
    client.data_to_send()
    wire = _frame(0x4, 0, 0, b"") + b"".join(frames)  # the server's SETTINGS first
    for start in range(0, len(wire), chunk):
        for event in client.receive_data(wire[start:start + chunk]):
            if isinstance(event, DataReceived):
                client.acknowledge(event.stream_id, event.flow_controlled_length)
        if client.sendable(stream_id) > 0:
            client.send_data(stream_id, b"x", end_stream=False)
        client.data_to_send()


# --- RFC 8441 extended CONNECT (Http2ProtocolOptions.allow_connect) ----------------------------

WEBSOCKET_CONNECT = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
                     (":authority", "a.test"), (":path", "/chat?room=1"),
                     ("sec-websocket-version", "13")]


def _h2_client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    return client


def _connect_server() -> tuple[Http2Codec, h2.connection.H2Connection]:
    """A server with allow_connect and an h2 client that has seen its SETTINGS."""
    server = Http2Codec(client_side=False, enable_connect_protocol=True)
    server.initiate()
    client = _h2_client()
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    return server, client


def test_allow_connect_advertises_enable_connect_protocol() -> None:
    _, client = _connect_server()
    assert client.remote_settings.get(0x8) == 1  # SETTINGS_ENABLE_CONNECT_PROTOCOL
    plain = _h2_client()
    plain.receive_data(_server_preface())
    assert plain.remote_settings.get(0x8, 0) == 0


def _server_preface() -> bytes:
    codec = Http2Codec(client_side=False)
    codec.initiate()
    return codec.data_to_send()


def test_extended_connect_becomes_an_upgrade_and_the_101_a_200() -> None:
    server, client = _connect_server()
    client.send_headers(1, WEBSOCKET_CONNECT)
    wire = client.data_to_send()
    events = []
    for index in range(len(wire)):  # byte by byte
        events.extend(server.receive_data(wire[index:index + 1]))
    request = next(e for e in events if isinstance(e, RequestReceived))
    head = request.head
    assert not request.end_stream
    # Envoy's transformUpgradeRequestFromH2toH1: the upgrade the CONNECT stands for.
    assert (head.method, head.path, head.authority, head.scheme, head.upgrade) == \
        ("GET", "/chat?room=1", "a.test", "http", "websocket")
    assert head.headers.get("upgrade") == "websocket"
    assert head.headers.get("connection") == "upgrade"
    assert head.headers.get("sec-websocket-version") == "13"
    server.send_response_head(1, ResponseHead(101, Headers([
        ("upgrade", "websocket"), ("connection", "upgrade"), ("content-length", "0"),
        ("sec-websocket-extensions", "x")])), end_stream=False)
    server.send_data(1, b"from-upstream", end_stream=False)
    answers = client.receive_data(server.data_to_send())
    response = next(e for e in answers if type(e).__name__ == "ResponseReceived")
    assert response.headers == [(b":status", b"200"), (b"sec-websocket-extensions", b"x")]
    assert b"".join(e.data for e in answers if type(e).__name__ == "DataReceived") \
        == b"from-upstream"
    client.send_data(1, b"from-client")
    events = server.receive_data(client.data_to_send())
    assert [e.data for e in events if isinstance(e, DataReceived)] == [b"from-client"]


def test_extended_connect_without_allow_connect_ends_the_connection() -> None:
    # Without SETTINGS_ENABLE_CONNECT_PROTOCOL a :protocol pseudo-header makes the request
    # malformed (RFC 8441 section 3); like any malformed request (Envoy's default) the
    # connection ends with PROTOCOL_ERROR.
    server = _server()
    events = server.receive_data(_raw_client(WEBSOCKET_CONNECT))
    assert not any(isinstance(e, RequestReceived) for e in events)
    assert [e.status for e in events if isinstance(e, ProtocolFailed)] == [1]


def test_connect_without_protocol_is_still_a_plain_connect() -> None:
    server, client = _connect_server()
    client.send_headers(1, [(":method", "CONNECT"), (":authority", "target.test:443")])
    events = server.receive_data(client.data_to_send())
    head = next(e for e in events if isinstance(e, RequestReceived)).head
    assert (head.method, head.authority, head.upgrade) == ("CONNECT", "target.test:443",
                                                           "connect")


def test_client_sends_an_upgrade_as_extended_connect_and_maps_200_to_101() -> None:
    client = Http2Codec(client_side=True)
    client.initiate()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    head = RequestHead("GET", "/chat", "a.test", "http", Headers([
        ("upgrade", "websocket"), ("connection", "upgrade"), ("content-length", "0"),
        ("sec-websocket-version", "13")]), "HTTP/1.1", upgrade="websocket")
    upgraded = client.send_request_head(head, end_stream=False)
    plain_upgrade = client.send_request_head(head, end_stream=False)
    received = [e for e in server.receive_data(client.data_to_send())
                if isinstance(e, h2.events.RequestReceived)]
    assert received[0].headers == [
        (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
        (b":authority", b"a.test"), (b":path", b"/chat"), (b"sec-websocket-version", b"13")]
    server.send_headers(upgraded, [(":status", "200")])
    server.send_headers(plain_upgrade, [(":status", "404")], end_stream=True)
    heads = {e.stream_id: e.head for e in client.receive_data(server.data_to_send())
             if type(e).__name__ == "ResponseReceived"}
    assert heads[upgraded].status == 101  # the upgrade's answer, as the router expects it
    assert heads[upgraded].headers.get("upgrade") == "websocket"
    assert heads[upgraded].headers.get("connection") == "upgrade"
    assert heads[plain_upgrade].status == 404  # refusals pass as they are
