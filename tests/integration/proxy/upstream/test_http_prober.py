"""HttpProber against loopback servers: keep-alive reuse (Envoy's reuse_connection), a server
that closes between checks, chunked bodies, reuse_connection: false."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from proxy.model.health import HttpCheck
from proxy.upstream.health.http_prober import HttpProber
from proxy.upstream.health.state import Verdict

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _server(responses: list[bytes], *, close_after_each: bool,
            connections: list[int]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while responses:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(responses.pop(0))
                await writer.drain()
                if close_after_each:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return handle


async def _run(responses: list[bytes], *, close_after_each: bool = False,
               reuse: bool = True, checks: int = 3) -> tuple[list[Verdict], int]:
    connections: list[int] = []
    server = await asyncio.start_server(
        _server(responses, close_after_each=close_after_each, connections=connections),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    prober = HttpProber("127.0.0.1", port, HttpCheck("/hc"), "svc", reuse_connection=reuse)
    verdicts = []
    async with server:
        try:
            for _ in range(checks):
                verdicts.append(await asyncio.wait_for(prober.probe(), 5))
                await asyncio.sleep(0.05)  # the interval: lets a peer's FIN arrive
        finally:
            await prober.close()
    return verdicts, len(connections)


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


async def test_keep_alive_reuses_one_connection() -> None:
    verdicts, connections = await _run([OK, CHUNKED, OK])
    assert verdicts == [Verdict.SUCCESS] * 3
    assert connections == 1


async def test_server_closing_between_checks_is_not_a_failure() -> None:
    verdicts, connections = await _run([OK, OK, OK], close_after_each=True)
    assert verdicts == [Verdict.SUCCESS] * 3
    assert connections == 3


async def test_reuse_connection_false_opens_one_per_check() -> None:
    verdicts, connections = await _run([OK, OK, OK], reuse=False)
    assert verdicts == [Verdict.SUCCESS] * 3
    assert connections == 3


async def test_unexpected_status_degraded_and_garbage() -> None:
    degraded = b"HTTP/1.1 200 OK\r\nx-envoy-degraded: 1\r\ncontent-length: 0\r\n\r\n"
    unavailable = b"HTTP/1.1 503 Unavailable\r\ncontent-length: 0\r\n\r\n"
    verdicts, _ = await _run([degraded, unavailable, b"NOT HTTP\r\n\r\n"])
    assert verdicts == [Verdict.DEGRADED, Verdict.ACTIVE_FAILURE, Verdict.NETWORK_FAILURE]
