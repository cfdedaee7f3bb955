"""One downstream stream's life (proxy.http.active_stream) over a recording transport
(connection_harness): how it ends early - reset by the client, the connection lost, answered by
a filter, timed out - and that nothing of it stays behind (the stream, its task, its router)."""

from __future__ import annotations

import asyncio

from proxy.codec.events import ResponseReceived, StreamEnded
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http2 import ErrorCodes, Http2Codec
from proxy.http.filter import HttpFilter, HttpStream, LocalReply
from proxy.http.http1_server import Http1ServerConnection
from proxy.http.http2_server import Http2ServerConnection
from tests.unit.proxy.http.connection_harness import counter, new_connection, settle


def _nothing_left(connection: object) -> bool:
    return not connection.streams and not connection.tasks  # type: ignore[attr-defined]


async def test_a_stream_the_client_resets_cancels_its_router_and_leaves_nothing() -> None:
    """RFC 9113 6.4: RST_STREAM ends the stream at once; the router's work for it stops
    (Envoy resets the upstream request) and the other streams go on."""
    connection, transport, router, stats = new_connection(Http2ServerConnection)
    client = Http2Codec(client_side=True)
    client.initiate()
    gone = client.send_request_head(RequestHead("GET", "/gone", "a", "http", Headers()),
                                    end_stream=True)
    kept = client.send_request_head(RequestHead("GET", "/kept", "a", "http", Headers()),
                                    end_stream=True)
    connection.receive(client.data_to_send())
    await settle()
    assert router.started == ["/gone", "/kept"]
    client.reset(gone, ErrorCodes.CANCEL)
    connection.receive(client.data_to_send())
    await settle()
    assert router.cancelled == ["/gone"]
    assert gone not in connection.streams and kept in connection.streams
    router.gate("/kept").set()
    await settle()
    events = client.receive_data(bytes(transport.written))
    assert kept in [e.stream_id for e in events if isinstance(e, StreamEnded)]
    assert gone not in [e.stream_id for e in events if isinstance(e, ResponseReceived)]
    assert _nothing_left(connection)
    assert counter(stats, "downstream_rq_2xx") == 1


async def test_a_lost_connection_cancels_every_stream_in_flight() -> None:
    connection, transport, router, stats = new_connection(Http1ServerConnection)
    connection.receive(b"GET /a HTTP/1.1\r\nhost: a\r\n\r\n")
    await settle()
    assert router.started == ["/a"]
    connection.lost()
    await settle()
    assert router.cancelled == ["/a"]
    assert _nothing_left(connection)
    assert transport.written == b""  # nothing is written to a transport that went
    assert counter(stats, "downstream_rq_2xx") == 0


class _Deny(HttpFilter):
    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        if stream.request.path == "/private":
            return LocalReply(403, "RBAC: access denied", details="rbac_access_denied")
        return None


async def test_a_filter_local_reply_answers_without_the_router() -> None:
    """Envoy's sendLocalReply from decodeHeaders: the filter chain stops, the router never
    sees the request, and the connection serves the next one."""
    connection, transport, router, stats = new_connection(Http1ServerConnection,
                                                          filters=[_Deny])
    connection.receive(b"GET /private HTTP/1.1\r\nhost: a\r\n\r\n")
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert transport.written.endswith(b"RBAC: access denied")
    assert router.started == []
    transport.written.clear()
    connection.receive(b"GET /public HTTP/1.1\r\nhost: a\r\n\r\n")
    router.gate("/public").set()
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert router.started == ["/public"]
    assert counter(stats, "downstream_rq_4xx") == 1 and counter(stats, "downstream_rq_2xx") == 1
    assert _nothing_left(connection)


async def test_a_request_whose_body_does_not_arrive_in_time_gets_408() -> None:
    """HCM request_timeout: the whole request within it, or 408 "request timeout" (Envoy's
    response_code_details request_overall_timeout); the router's wait is cancelled."""
    connection, transport, router, _ = new_connection(Http1ServerConnection,
                                                      request_timeout=0.05)
    connection.receive(b"POST /slow HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nhalf")
    await settle()
    assert router.started == ["/slow"]
    await asyncio.sleep(0.2)
    await settle()
    assert transport.written.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert router.cancelled == ["/slow"]
    assert not connection.streams
