"""HTTP/2 downstream (h2c prior knowledge) and upstream, with per-stream load balancing."""

from __future__ import annotations

import asyncio

from tests.integration.proxy.http.clients import H1Client, H2Client
from tests.integration.proxy.http.harness import (
    H2_OPTIONS,
    Sidecar,
    hcm,
    simple_routes,
    static_cluster,
)
from tests.support.websockets import H2WebSocketClient


async def test_one_h2_connection_spreads_over_three_h2c_backends(backends) -> None:  # type: ignore[no-untyped-def]
    servers = [backends(f"b{i}", http2=True) for i in range(3)]
    cluster = static_cluster("grpcish", [s.port for s in servers],
                             typed_extension_protocol_options=H2_OPTIONS)
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "grpcish"}})
    async with Sidecar(hcm(routes), [cluster]) as sidecar, H2Client(sidecar.port) as client:
        responses = await asyncio.gather(*(client.request("GET", f"/r{i}") for i in range(60)))
        assert all(r.status == 200 for r in responses)
        counts = sorted(s.total for s in servers)
        assert counts == [20, 20, 20]  # round robin per request, not per connection
        # the upstream side multiplexes: one connection per backend
        assert sidecar.counter("cluster.grpcish.upstream_cx_total") == 3


async def test_h2_downstream_to_h1_upstream_and_trailers(backends) -> None:  # type: ignore[no-untyped-def]
    h1 = backends("h1")
    h2 = backends("h2", http2=True)
    routes = simple_routes(
        {"match": {"prefix": "/one"}, "route": {"cluster": "h1"}},
        {"match": {"prefix": "/two"}, "route": {"cluster": "h2"}})
    clusters = [static_cluster("h1", [h1.port]),
                static_cluster("h2", [h2.port], typed_extension_protocol_options=H2_OPTIONS)]
    async with Sidecar(hcm(routes), clusters) as sidecar, H2Client(sidecar.port) as client:
        one = await client.request("POST", "/one", body=b"x" * 100_000)
        assert one.status == 200 and one.json()["body"] == "x" * 100_000
        two = await client.request("GET", "/two", headers=[("x-echo-trailer", "grpc-status=0")])
        assert two.status == 200
        assert two.trailers == [("grpc-status", "0")]
        big = await client.request("GET", "/two", headers=[("x-echo-size", "3000000")])
        assert len(big.body) == 3_000_000


async def test_codec_auto_serves_both_protocols(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        async with H1Client(sidecar.port) as h1:
            assert (await h1.request("GET", "/")).status == 200
        async with H2Client(sidecar.port) as h2:
            assert (await h2.request("GET", "/")).status == 200


async def test_h2_pool_honours_the_peers_max_concurrent_streams(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("limited", http2=True, max_streams=2)
    cluster = static_cluster("limited", [backend.port], typed_extension_protocol_options=H2_OPTIONS)
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "limited"}})
    async with Sidecar(hcm(routes), [cluster]) as sidecar, H2Client(sidecar.port) as client:
        slow = [("x-echo-delay", "0.3")]
        responses = await asyncio.gather(*(client.request("GET", f"/{i}", headers=slow)
                                           for i in range(6)))
        assert [r.status for r in responses] == [200] * 6
        # six concurrent streams, two per connection: three upstream connections
        assert sidecar.counter("cluster.limited.upstream_cx_total") == 3
        assert backend.connections == 3


async def test_draining_finishes_in_flight_work_and_refuses_new(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar, \
            H2Client(sidecar.port) as h2, H1Client(sidecar.port) as h1:
        assert (await h1.request("GET", "/warm")).status == 200
        in_flight = asyncio.create_task(h2.request("GET", "/slow",
                                                   headers=[("x-echo-delay", "0.3")]))
        slow_h1 = asyncio.create_task(h1.request("GET", "/slow1",
                                                 headers=[("x-echo-delay", "0.3")]))
        await asyncio.sleep(0.1)
        sidecar.filter.start_draining()
        response = await in_flight
        assert response.status == 200  # the stream in flight completes
        for _ in range(50):
            if h2.goaway is not None:
                break
            await asyncio.sleep(0.02)
        assert h2.goaway is not None and h2.goaway.error_code == 0
        last = await slow_h1
        assert last.status == 200 and last.header("connection") == "close"


async def test_a_response_before_the_end_of_the_request_is_followed_by_rst_no_error() -> None:
    """RFC 9113 8.1: a server that answered before the request ended may ask the client to
    stop sending with RST_STREAM NO_ERROR, after the complete response (Envoy does). The
    WebSocket test client is a raw h2 client with a frame-level view of how streams end."""
    routes = simple_routes({"match": {"prefix": "/"}, "direct_response": {"status": 403}})
    async with Sidecar(hcm(routes, codec_type="HTTP2"), []) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            await client.settings_seen.wait()
            client.stream_id = client.conn.get_next_available_stream_id()
            client.conn.send_headers(client.stream_id, [
                (":method", "POST"), (":scheme", "http"), (":path", "/upload"),
                (":authority", "a.test")])
            client.send(b"part of a body")
            end = await client.reset_after_end()
    assert client.status == 403
    assert (end.end_stream, end.reset_code) == (True, 0)
