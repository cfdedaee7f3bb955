"""The HTTP/1.1 pool's pending queue and circuit breakers on loopback (Envoy conn_pool_base)."""

from __future__ import annotations

import asyncio

import pytest

from proxy.codec.events import StreamEnded
from proxy.codec.headers import Headers, RequestHead
from proxy.stats import Stats
from proxy.upstream.circuit_breakers import CircuitBreaker, Resource, RoutingPriority, Thresholds
from proxy.upstream.host import Host
from proxy.upstream.pools.base import ConnectFailedError, PoolOverflowError
from proxy.upstream.pools.http1 import Http1Pool
from tests.support.ports import free_port
from tests.support.tcp_servers import port_of, start_server, stop_servers


class Runtime:
    def __init__(self, thresholds: Thresholds) -> None:
        self.stats = Stats()
        self.prefix = "cluster.c."
        self.breaker = CircuitBreaker("c", RoutingPriority.DEFAULT, thresholds, self.stats)
        self.opened = self.failed = self.closed = 0

    def circuit_breaker(self) -> CircuitBreaker:
        return self.breaker

    def connection_opened(self, host: Host) -> None:
        self.opened += 1

    def connection_failed(self, host: Host, *, timeout: bool = False) -> None:
        self.failed += 1

    def connection_closed(self, host: Host, *, local: bool, with_active_request: bool) -> None:
        self.closed += 1


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _exchange(pool: Http1Pool) -> None:
    stream = await pool.new_stream()
    await stream.send_head(RequestHead("GET", "/", "x", "http", Headers()), end_stream=True)
    while not isinstance(await stream.next_event(), StreamEnded):
        pass
    stream.release()


async def test_pending_requests_share_the_one_allowed_connection() -> None:
    server = await start_server(_answer)
    runtime = Runtime(Thresholds(max_connections=1, max_pending_requests=10))
    pool = Http1Pool(runtime, Host("127.0.0.1", port_of(server)),
                     connect_timeout=2)
    try:
        async with asyncio.timeout(20):
            await asyncio.gather(*(_exchange(pool) for _ in range(5)))
        assert runtime.opened == 1
        assert runtime.stats.counter("cluster.c.upstream_cx_overflow").value >= 1
        assert runtime.stats.counter("cluster.c.upstream_rq_pending_total").value == 5
        assert runtime.breaker.in_use[Resource.REQUESTS] == 0
        assert runtime.breaker.in_use[Resource.PENDING_REQUESTS] == 0
    finally:
        pool.close()
        await stop_servers(server)


async def test_max_requests_fails_a_request_when_its_connection_is_ready() -> None:
    server = await start_server(_answer)
    runtime = Runtime(Thresholds(max_requests=1))
    pool = Http1Pool(runtime, Host("127.0.0.1", port_of(server)),
                     connect_timeout=2)
    try:
        async with asyncio.timeout(20):
            first = await pool.new_stream()
            with pytest.raises(PoolOverflowError):
                await pool.new_stream()  # a second connection opens, then overflows
            assert runtime.opened == 2 and len(pool.idle) == 1
            first.reset()
            second = await pool.new_stream()  # the idle connection, slot free again
            second.reset()
        assert runtime.breaker.in_use[Resource.REQUESTS] == 0
    finally:
        pool.close()
        await stop_servers(server)


async def test_a_failed_connect_fails_every_pending_request() -> None:
    runtime = Runtime(Thresholds(max_connections=1))
    pool = Http1Pool(runtime, Host("127.0.0.1", free_port()), connect_timeout=2)
    async with asyncio.timeout(20):
        results = await asyncio.gather(pool.new_stream(), pool.new_stream(),
                                       return_exceptions=True)
    assert all(isinstance(result, ConnectFailedError) for result in results)
    assert runtime.failed == 1  # one connection attempt (max_connections 1), two failures
    assert runtime.breaker.in_use[Resource.CONNECTIONS] == 0
    assert runtime.breaker.in_use[Resource.PENDING_REQUESTS] == 0
    pool.close()


async def test_a_cancelled_pending_request_leaves_the_queue() -> None:
    server = await start_server(_answer)
    runtime = Runtime(Thresholds(max_connections=1, max_pending_requests=1))
    pool = Http1Pool(runtime, Host("127.0.0.1", port_of(server)),
                     connect_timeout=2)
    try:
        async with asyncio.timeout(20):
            first = await pool.new_stream()
            waiting = asyncio.ensure_future(pool.new_stream())
            await asyncio.sleep(0)
            assert len(pool.pending) == 1
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            assert not pool.pending
            assert runtime.breaker.in_use[Resource.PENDING_REQUESTS] == 0
            first.reset()
    finally:
        pool.close()
        await stop_servers(server)
