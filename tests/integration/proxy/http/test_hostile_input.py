"""Request smuggling shapes and protocol errors: 4xx and a closed connection, or GOAWAY."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import pytest

from tests.integration.proxy.http.clients import raw_exchange
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster

SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "duplicate_cl": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n"
                    b"\r\nhello!",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
    "bad_header_char": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x01c\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\nHost: a\n\n",
    "missing_host": b"GET / HTTP/1.1\r\n\r\n",
    "bad_chunk_size": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
}


@pytest.fixture
def routes() -> dict[str, object]:
    return simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})


@pytest.mark.parametrize("shape", sorted(SMUGGLING))
async def test_smuggling_shapes_get_400_and_close(shape: str, routes, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        # raw_exchange returns only once the sidecar closed the connection
        reply = await raw_exchange(sidecar.port, SMUGGLING[shape])
    assert reply.startswith(b"HTTP/1.1 400 "), reply
    assert b"connection: close" in reply.lower()
    assert backend.total == 0


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET / HTTP/1.0\r\n\r\n", b"426"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", b"501"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 70_000 + b"\r\n\r\n", b"431"),
])
async def test_refused_requests(request_bytes: bytes, status: bytes, routes, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        reply = await raw_exchange(sidecar.port, request_bytes)
    assert reply.split(b" ")[1] == status, reply[:200]


async def test_pipelined_requests_answer_in_order(routes, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    pipelined = (b"GET /1 HTTP/1.1\r\nHost: a\r\nx-echo-delay: 0.2\r\n\r\n"
                 b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n"
                 b"GET /3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        reply = await raw_exchange(sidecar.port, pipelined)
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    order = [reply.index(f'"path": "/{n}"'.encode()) for n in (1, 2, 3)]
    assert order == sorted(order)


async def test_request_headers_timeout_closes_slow_clients(routes, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    config = hcm(routes, request_headers_timeout="0.3s")
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar:
        started = asyncio.get_running_loop().time()
        reply = await raw_exchange(sidecar.port, b"GET / HTTP/1.1\r\nHost: a\r\n", wait=5)
        elapsed = asyncio.get_running_loop().time() - started
    # Envoy 1.40 (tests/conformance/proxy/http/test_request_timeouts_vs_envoy.py): 408 and a close.
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"\r\nconnection: close\r\n" in reply
    assert reply.endswith(b"\r\n\r\nrequest header timeout")
    assert elapsed < 4  # closed, well before the 5 s


async def _h2_exchange(port: int, frames: bytes) -> list[object]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    writer.write(client.data_to_send() + frames)
    events: list[object] = []
    try:
        async with asyncio.timeout(5):
            while data := await reader.read(65536):
                events.extend(client.receive_data(data))
    except h2.exceptions.ProtocolError:
        pass
    finally:
        writer.close()
    return events


async def test_http2_protocol_error_gets_goaway(routes, backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    # A DATA frame on stream 0 is a connection error of type PROTOCOL_ERROR (RFC 9113 6.1).
    bad_data = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        events = await _h2_exchange(sidecar.port, bad_data)
    goaways = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaways and goaways[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR


async def test_http2_request_without_path_ends_the_connection(routes, backends) -> None:  # type: ignore[no-untyped-def]
    # h2 treats a header block without :path as a connection error; Envoy does the same by
    # default (stream_error_on_invalid_http_messaging: false): GOAWAY PROTOCOL_ERROR.
    backend = backends("a")
    client = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False))
    client.initiate_connection()
    client.data_to_send()
    client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":authority", "a")],
                        end_stream=True)
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        events = await _h2_exchange(sidecar.port, client.data_to_send())
    goaways = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaways and goaways[0].error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert backend.total == 0
