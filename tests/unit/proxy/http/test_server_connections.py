"""The downstream connections' state machines (proxy.http.http1_server, http2_server) over a
recording transport (connection_harness): no sockets, the loop's own time."""

from __future__ import annotations

from proxy.codec.events import ConnectionEnded, ResponseReceived, StreamEnded
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http2 import Http2Codec
from proxy.http.http1_server import Http1ServerConnection
from proxy.http.http2_server import Http2ServerConnection
from tests.unit.proxy.http.connection_harness import counter, new_connection, settle


async def test_http1_pipelined_requests_are_answered_in_order() -> None:
    connection, transport, router, stats = new_connection(Http1ServerConnection)
    connection.receive(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n"
                       b"GET /fast HTTP/1.1\r\nhost: a\r\n\r\n")
    router.gate("/fast").set()
    await settle()
    assert transport.written == b""  # /fast waits for /slow (RFC 9112 9.3.2)
    router.gate("/slow").set()
    await settle()
    wire = bytes(transport.written)
    assert wire.index(b"\r\n\r\n/slow") < wire.index(b"\r\n\r\n/fast")
    assert counter(stats, "downstream_rq_total") == 2
    assert counter(stats, "downstream_rq_2xx") == 2
    assert not connection.streams and not connection.tasks


async def test_http1_expect_100_continue_is_answered_before_the_body() -> None:
    connection, transport, router, _ = new_connection(Http1ServerConnection)
    connection.receive(b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n"
                       b"expect: 100-continue\r\n\r\n")
    await settle()
    assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.receive(b"hi")
    router.gate("/p").set()
    await settle()
    assert transport.written.endswith(b"\r\n\r\n/p")


async def test_http1_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    connection, transport, _, stats = new_connection(Http1ServerConnection)
    connection.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closed
    assert counter(stats, "downstream_cx_protocol_error") == 1


async def test_http1_a_body_past_its_limit_stops_reading_until_it_drains() -> None:
    connection, transport, _, _ = new_connection(Http1ServerConnection)
    connection.info.buffer_limit = 4
    connection.receive(b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 8\r\n\r\n12345678")
    await settle()
    assert not transport.reading  # nobody reads the body yet: it queues past its limit
    stream = next(iter(connection.streams.values()))
    await stream.body.read()
    assert transport.reading


async def test_http1_draining_answers_with_connection_close() -> None:
    connection, transport, router, _ = new_connection(Http1ServerConnection)
    connection.receive(b"GET /d HTTP/1.1\r\nhost: a\r\n\r\n")
    await settle()
    connection.start_draining()
    assert not transport.closed  # the request in flight finishes
    router.gate("/d").set()
    await settle()
    assert b"\r\nconnection: close\r\n" in transport.written.lower()
    assert transport.closed


async def test_http2_streams_are_answered_concurrently() -> None:
    connection, transport, router, stats = new_connection(Http2ServerConnection)
    client = Http2Codec(client_side=True)
    client.initiate()
    slow = client.send_request_head(RequestHead("GET", "/slow", "a", "http", Headers()),
                                    end_stream=True)
    fast = client.send_request_head(RequestHead("GET", "/fast", "a", "http", Headers()),
                                    end_stream=True)
    connection.receive(client.data_to_send())
    router.gate("/fast").set()
    await settle()
    events = client.receive_data(bytes(transport.written))
    answered = [e.stream_id for e in events if isinstance(e, ResponseReceived)]
    assert answered == [fast]  # not held behind /slow
    transport.written.clear()
    router.gate("/slow").set()
    await settle()
    events = client.receive_data(bytes(transport.written))
    assert slow in [e.stream_id for e in events if isinstance(e, StreamEnded)]
    assert counter(stats, "downstream_rq_2xx") == 2


async def test_http2_draining_sends_goaway_and_closes_when_idle() -> None:
    connection, transport, _, _ = new_connection(Http2ServerConnection)
    client = Http2Codec(client_side=True)
    client.initiate()
    connection.receive(client.data_to_send())
    connection.start_draining()
    await settle()
    assert transport.closed
    events = client.receive_data(bytes(transport.written))
    assert any(isinstance(e, ConnectionEnded) for e in events)  # GOAWAY went out first
