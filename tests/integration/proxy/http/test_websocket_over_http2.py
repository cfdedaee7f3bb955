"""WebSocket over HTTP/2 (RFC 8441) downstream, tunnelled to an HTTP/1.1 upstream as an
Upgrade (Envoy docs: arch_overview/http/upgrades, "Websocket over HTTP/2 hops")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.proxy.http.harness import (
    H2_OPTIONS,
    Sidecar,
    hcm,
    simple_routes,
    static_cluster,
)
from tests.support.websockets import (
    H2ConnectEchoBackend,
    H2WebSocketClient,
    UpgradeEchoBackend,
)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[UpgradeEchoBackend, int]]:
    backend = UpgradeEchoBackend()
    port = await backend.start()
    yield backend, port
    await backend.close()


def _config(**extra: Any) -> dict[str, Any]:
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "ws"}})
    return hcm(routes, codec_type="HTTP2", http2_protocol_options={"allow_connect": True},
               **extra)


async def test_extended_connect_is_tunnelled_to_an_http1_upgrade(
        echo: tuple[UpgradeEchoBackend, int]) -> None:
    backend, port = echo
    config = _config(upgrade_configs=[{"upgrade_type": "websocket"}])
    async with Sidecar(config, [static_cluster("ws", [port])]) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            assert await client.open("/chat?room=1") == 200
            for message in (b"hello", b"\x81\x05frame", b"x" * 100_000):
                client.send(message)
                assert await client.receive(len(message)) == message
            client.send(b"bye")  # the backend closes its side after echoing it
            assert await client.receive(3) == b"bye"
            await client.ended()
    head = backend.heads[0]
    assert head.startswith(b"get /chat?room=1 http/1.1\r\n")
    assert b"\r\nupgrade: websocket\r\n" in head and b"\r\nconnection: upgrade\r\n" in head
    assert b"\r\nhost: example.com\r\n" in head
    assert (dict(client.headers).get("upgrade"), dict(client.headers).get("connection")) == \
        (None, None)


async def test_route_upgrade_config_enables_it(echo: tuple[UpgradeEchoBackend, int]) -> None:
    _, port = echo
    routes = simple_routes({"match": {"prefix": "/"}, "route": {
        "cluster": "ws", "upgrade_configs": [{"upgrade_type": "websocket"}]}})
    config = hcm(routes, codec_type="HTTP2", http2_protocol_options={"allow_connect": True})
    async with Sidecar(config, [static_cluster("ws", [port])]) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            assert await client.open() == 200
            client.send(b"ping")
            assert await client.receive(4) == b"ping"


async def test_websocket_not_enabled_is_403(echo: tuple[UpgradeEchoBackend, int]) -> None:
    backend, port = echo
    async with Sidecar(_config(), [static_cluster("ws", [port])]) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            assert await client.open() == 403
    assert backend.heads == []


async def test_route_timeout_starts_when_the_client_half_closes(
        echo: tuple[UpgradeEchoBackend, int]) -> None:
    """RouteAction.timeout runs from the end of the request: an open tunnel outlives it; once
    the client sends END_STREAM the clock starts and the stream is reset (INTERNAL_ERROR)."""
    _, port = echo
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "ws",
                                                                "timeout": "0.3s"}})
    config = hcm(routes, codec_type="HTTP2", http2_protocol_options={"allow_connect": True},
                 upgrade_configs=[{"upgrade_type": "websocket"}])
    async with Sidecar(config, [static_cluster("ws", [port])]) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            assert await client.open() == 200
            await asyncio.sleep(0.5)  # past the route timeout: nothing happens yet
            client.send(b"still here")
            assert await client.receive(10) == b"still here"
            started = asyncio.get_running_loop().time()
            client.send(b"last", end_stream=True)
            assert await client.receive(4) == b"last"
            end = await client.ended()
            elapsed = asyncio.get_running_loop().time() - started
    assert (end.end_stream, end.reset_code) == (False, 2)
    assert 0.25 < elapsed < 2
    assert sidecar.counter("cluster.ws.upstream_rq_101") == 1


async def test_backend_closing_the_tunnel_is_a_connect_error(
        echo: tuple[UpgradeEchoBackend, int]) -> None:
    _, port = echo
    config = _config(upgrade_configs=[{"upgrade_type": "websocket"}])
    async with Sidecar(config, [static_cluster("ws", [port])]) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            assert await client.open() == 200
            client.send(b"bye")
            assert await client.receive(3) == b"bye"
            end = await client.ended()
    assert (end.end_stream, end.reset_code) == (False, 0xA)  # RFC 9113 8.5 CONNECT_ERROR


@pytest.fixture
async def h2_echo() -> AsyncIterator[tuple[H2ConnectEchoBackend, int]]:
    backend = H2ConnectEchoBackend()
    port = await backend.start()
    yield backend, port
    await backend.close()


async def test_websocket_to_an_http2_upstream_is_extended_connect_both_ways(
        h2_echo: tuple[H2ConnectEchoBackend, int]) -> None:
    """HTTP/2 on both hops: CONNECT -> (GET upgrade inside) -> CONNECT :protocol upstream;
    the upstream's 200 comes back as 200 (a 101 in between)."""
    backend, port = h2_echo
    config = _config(upgrade_configs=[{"upgrade_type": "websocket"}])
    cluster = static_cluster("ws", [port], typed_extension_protocol_options=H2_OPTIONS)
    async with Sidecar(config, [cluster]) as sidecar, \
            H2WebSocketClient(sidecar.port) as client:
        async with asyncio.timeout(5):
            assert await client.open("/chat?x=1") == 200
            client.send(b"hello")
            assert await client.receive(5) == b"hello"
            client.send(b"bye")
            assert await client.receive(3) == b"bye"
            end = await client.ended()
    assert end.end_stream
    request = dict(backend.requests[0])
    assert (request[":method"], request[":protocol"], request[":path"],
            request[":authority"]) == ("CONNECT", "websocket", "/chat?x=1", "example.com")
    assert "upgrade" not in request and "connection" not in request


async def test_http1_websocket_to_an_http2_upstream(
        h2_echo: tuple[H2ConnectEchoBackend, int]) -> None:
    backend, port = h2_echo
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "ws"}})
    config = hcm(routes, upgrade_configs=[{"upgrade_type": "websocket"}])
    cluster = static_cluster("ws", [port], typed_extension_protocol_options=H2_OPTIONS)
    async with Sidecar(config, [cluster]) as sidecar:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
        writer.write(b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(b"ping")
            echoed = await reader.readexactly(4)
        writer.close()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nupgrade: websocket\r\n" in head.lower()
    assert b"\r\nconnection: upgrade\r\n" in head.lower()
    assert echoed == b"ping"
    assert dict(backend.requests[0])[":protocol"] == "websocket"
