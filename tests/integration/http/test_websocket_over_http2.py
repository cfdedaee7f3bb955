"""WebSocket over HTTP/2 (RFC 8441) downstream, tunnelled to an HTTP/1.1 upstream as an
Upgrade (Envoy docs: arch_overview/http/upgrades, "Websocket over HTTP/2 hops")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.http.harness import Sidecar, hcm, simple_routes, static_cluster
from tests.support.websockets import H2WebSocketClient, UpgradeEchoBackend


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
