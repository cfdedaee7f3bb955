"""WebSocket upgrade tunnelled after the 101, and bounded buffering for a slow reader."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster
from tests.support.tcp_servers import port_of, start_server, stop_servers


@pytest.fixture
async def upgrade_backend() -> AsyncIterator[int]:
    """Answers an Upgrade request with 101 and then echoes raw bytes back."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if b"upgrade: websocket" not in head.lower():
                writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                return
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await start_server(serve)
    yield port_of(server)
    await stop_servers(server)


UPGRADE = (b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


async def test_websocket_is_tunnelled_after_101(upgrade_backend: int) -> None:
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "ws"}})
    config = hcm(routes, upgrade_configs=[{"upgrade_type": "websocket"}])
    async with Sidecar(config, [static_cluster("ws", [upgrade_backend])]) as sidecar:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
        writer.write(UPGRADE)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            assert b"upgrade: websocket" in head.lower()
            for message in (b"hello", b"\x81\x05frame"):
                writer.write(message)
                assert await reader.readexactly(len(message)) == message
        writer.close()


async def test_upgrade_not_enabled_is_403(upgrade_backend: int) -> None:
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "ws"}})
    async with Sidecar(hcm(routes), [static_cluster("ws", [upgrade_backend])]) as sidecar:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
        writer.write(UPGRADE)
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"\r\nconnection: close\r\n" in head.lower()  # Envoy closes after refusing


async def test_slow_reader_does_not_make_the_sidecar_buffer_everything(backends) -> None:  # type: ignore[no-untyped-def]
    """A 64 MB response to a client that stops reading: the sidecar stops reading upstream
    once its buffers (about 1 MB per direction plus socket buffers) are full."""
    backend = backends("big")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a",
                                                                "timeout": "0s"}})
    async with Sidecar(hcm(routes), [static_cluster("a", [backend.port])]) as sidecar:
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port,
                                                       limit=1024)
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nx-echo-size: 67108864\r\n\r\n")
        # the client reads nothing; wait (generously) until the sidecar stops reading upstream
        manager = sidecar.context.http_pools
        paused = None
        async with asyncio.timeout(20):
            while paused is None:
                await asyncio.sleep(0.05)
                busy = [connection for pool in manager._pools.values()
                        for connection in pool.busy]
                if busy and busy[0].transport is not None \
                        and not busy[0].transport.is_reading():
                    paused = busy[0]
        await asyncio.sleep(0.5)  # and it stays bounded while paused
        held = paused.stream._buffered  # response bytes queued inside the sidecar
        assert not paused.transport.is_reading()
        assert held <= 2 * 1024 * 1024
        # the backend could not push the whole body into the sidecar
        received = 0
        async with asyncio.timeout(30):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
                if received > 64 * 1024 * 1024:
                    break
        writer.close()
    assert received >= 64 * 1024 * 1024


async def test_connect_is_tunnelled_after_200() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"CONNECT target.test:443 HTTP/1.1")
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
            while data := await reader.read(65536):
                writer.write(data[::-1])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await start_server(serve)
    port = port_of(server)
    routes = simple_routes({"match": {"connect_matcher": {}}, "route": {"cluster": "proxy"}},
                           {"match": {"prefix": "/"}, "direct_response": {"status": 404}})
    config = hcm(routes, upgrade_configs=[{"upgrade_type": "CONNECT"}])
    try:
        async with Sidecar(config, [static_cluster("proxy", [port])]) as sidecar:
            reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.port)
            writer.write(b"CONNECT target.test:443 HTTP/1.1\r\nHost: target.test:443\r\n\r\n")
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200 ")
                assert b"transfer-encoding" not in head.lower()
                writer.write(b"abc")
                assert await reader.readexactly(3) == b"cba"
            writer.close()
    finally:
        await stop_servers(server)
