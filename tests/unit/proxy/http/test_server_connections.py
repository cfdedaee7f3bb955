"""The downstream connections' state machines (proxy.http.http1_server, http2_server) over a
recording transport: no sockets, the loop's own time. A router stand-in answers each request
when the test says so."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.codec.events import ConnectionEnded, ResponseReceived, StreamEnded
from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, RequestHead, ResponseHead
from proxy.codec.http2 import Http2Codec
from proxy.http.http1_server import Http1ServerConnection
from proxy.http.http2_server import Http2ServerConnection
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.settings import HcmSettings
from proxy.stats import Stats


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class _Router:
    """Answers 200 with the request's path as the body once `release(path)` is called."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, path: str) -> asyncio.Event:
        return self.gates.setdefault(path, asyncio.Event())

    async def handle(self, stream: Any, config: Any, downstream: Any) -> None:
        await self.gate(stream.request.path).wait()
        head = ResponseHead(200, Headers([("content-length", str(len(stream.request.path)))]))
        await downstream.send_response(head, end_stream=False)
        await downstream.send_data(stream.request.path.encode(), end_stream=True)


def _connection(kind: Any, **settings: Any) -> tuple[Any, _Transport, _Router, Stats]:
    loop = asyncio.get_running_loop()
    router, stats, transport = _Router(), Stats(), _Transport()
    manager = HttpManager(HcmSettings(stat_prefix="t", delayed_close_timeout=0, **settings),
                          lambda: None, [], router, stats=stats)  # type: ignore[arg-type]
    info = ConnectionInfo(("10.0.0.1", 5000), ("10.0.0.2", 80), 1)
    return kind(manager, info, transport, loop, WriteFlow()), transport, router, stats


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def _counter(stats: Stats, name: str) -> int:
    return stats.counter(f"http.t.{name}").value


async def test_http1_pipelined_requests_are_answered_in_order() -> None:
    connection, transport, router, stats = _connection(Http1ServerConnection)
    connection.receive(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\n"
                       b"GET /fast HTTP/1.1\r\nhost: a\r\n\r\n")
    router.gate("/fast").set()
    await _settle()
    assert transport.written == b""  # /fast waits for /slow (RFC 9112 9.3.2)
    router.gate("/slow").set()
    await _settle()
    wire = bytes(transport.written)
    assert wire.index(b"\r\n\r\n/slow") < wire.index(b"\r\n\r\n/fast")
    assert _counter(stats, "downstream_rq_total") == 2
    assert _counter(stats, "downstream_rq_2xx") == 2
    assert not connection.streams and not connection.tasks


async def test_http1_expect_100_continue_is_answered_before_the_body() -> None:
    connection, transport, router, _ = _connection(Http1ServerConnection)
    connection.receive(b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n"
                       b"expect: 100-continue\r\n\r\n")
    await _settle()
    assert transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    connection.receive(b"hi")
    router.gate("/p").set()
    await _settle()
    assert transport.written.endswith(b"\r\n\r\n/p")


async def test_http1_a_malformed_request_gets_400_and_the_connection_closes() -> None:
    connection, transport, _, stats = _connection(Http1ServerConnection)
    connection.receive(b"GET / HTTP/1.1\r\nbad header\r\n\r\n")
    await _settle()
    assert transport.written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert transport.closed
    assert _counter(stats, "downstream_cx_protocol_error") == 1


async def test_http1_a_body_past_its_limit_stops_reading_until_it_drains() -> None:
    connection, transport, _, _ = _connection(Http1ServerConnection)
    connection.info.buffer_limit = 4
    connection.receive(b"POST /p HTTP/1.1\r\nhost: a\r\ncontent-length: 8\r\n\r\n12345678")
    await _settle()
    assert not transport.reading  # nobody reads the body yet: it queues past its limit
    stream = next(iter(connection.streams.values()))
    await stream.body.read()
    assert transport.reading


async def test_http1_draining_answers_with_connection_close() -> None:
    connection, transport, router, _ = _connection(Http1ServerConnection)
    connection.receive(b"GET /d HTTP/1.1\r\nhost: a\r\n\r\n")
    await _settle()
    connection.start_draining()
    assert not transport.closed  # the request in flight finishes
    router.gate("/d").set()
    await _settle()
    assert b"\r\nconnection: close\r\n" in transport.written.lower()
    assert transport.closed


async def test_http2_streams_are_answered_concurrently() -> None:
    connection, transport, router, stats = _connection(Http2ServerConnection)
    client = Http2Codec(client_side=True)
    client.initiate()
    slow = client.send_request_head(RequestHead("GET", "/slow", "a", "http", Headers()),
                                    end_stream=True)
    fast = client.send_request_head(RequestHead("GET", "/fast", "a", "http", Headers()),
                                    end_stream=True)
    connection.receive(client.data_to_send())
    router.gate("/fast").set()
    await _settle()
    events = client.receive_data(bytes(transport.written))
    answered = [e.stream_id for e in events if isinstance(e, ResponseReceived)]
    assert answered == [fast]  # not held behind /slow
    transport.written.clear()
    router.gate("/slow").set()
    await _settle()
    events = client.receive_data(bytes(transport.written))
    assert slow in [e.stream_id for e in events if isinstance(e, StreamEnded)]
    assert _counter(stats, "downstream_rq_2xx") == 2


async def test_http2_draining_sends_goaway_and_closes_when_idle() -> None:
    connection, transport, _, _ = _connection(Http2ServerConnection)
    client = Http2Codec(client_side=True)
    client.initiate()
    connection.receive(client.data_to_send())
    connection.start_draining()
    await _settle()
    assert transport.closed
    events = client.receive_data(bytes(transport.written))
    assert any(isinstance(e, ConnectionEnded) for e in events)  # GOAWAY went out first
