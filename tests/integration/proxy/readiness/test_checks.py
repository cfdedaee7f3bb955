"""The readiness probe's checks on loopback (proxy/readiness/runner.py): a TCP connect, an
HTTP GET (200-399 ready, as Kubernetes' httpGet), each bounded by timeoutSeconds; and the probe
loop reporting only changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from proxy.readiness.probe import ProbeSettings
from proxy.readiness.runner import check, run_probe
from tests.support.ports import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def answering(head: bytes) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(head)
            await writer.drain()
        finally:
            writer.close()
    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.read()  # never answers
    finally:
        writer.close()


async def test_tcp_connect() -> None:
    async with serving(silent) as port:
        assert await check(ProbeSettings("127.0.0.1", port)) is None
    closed = free_port()
    error = await check(ProbeSettings("127.0.0.1", closed))
    assert error is not None and f"127.0.0.1:{closed}" in error and "refused" in error.lower()


async def test_http_get_statuses() -> None:
    for head, expected in ((b"HTTP/1.1 204 No Content\r\n\r\n", None),
                           (b"HTTP/1.1 302 Found\r\nlocation: /\r\n\r\n", None),
                           (b"HTTP/1.1 503 Service Unavailable\r\n\r\n", "GET /ready: HTTP 503"),
                           (b"SSH-2.0-OpenSSH\r\n", "GET /ready: not an HTTP response")):
        async with serving(answering(head)) as port:
            assert await check(ProbeSettings("127.0.0.1", port, "/ready")) == expected


async def test_a_probe_that_gets_no_answer_fails_at_its_timeout() -> None:
    async with serving(silent) as port:
        loop = asyncio.get_running_loop()
        started = loop.time()
        error = await check(ProbeSettings("127.0.0.1", port, "/ready", timeout=0.3))
        assert error == f"127.0.0.1:{port}: timed out after 0.3s"
        assert loop.time() - started < 2.0


async def test_the_probe_loop_reports_changes_only() -> None:
    reports: asyncio.Queue[tuple[bool, str]] = asyncio.Queue()
    port = free_port()
    settings = ProbeSettings("127.0.0.1", port, period=0.1, failure_threshold=2)
    probing = asyncio.create_task(run_probe(settings, lambda *report: reports.put_nowait(report)))
    try:
        async with asyncio.timeout(10):
            healthy, message = await reports.get()
            assert healthy is False and "refused" in message.lower()
            server = await asyncio.start_server(silent, "127.0.0.1", port)
            try:
                assert await reports.get() == (True, "")
                await asyncio.sleep(0.3)  # more successful probes: nothing new reported
                assert reports.empty()
            finally:
                server.close()
                await server.wait_closed()
            assert (await reports.get())[0] is False
    finally:
        probing.cancel()
        await asyncio.gather(probing, return_exceptions=True)
