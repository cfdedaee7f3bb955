"""The HTTP/2 pool's connect is the pool's, not the first asker's: requests waiting for it are
served when the request that started it gives up, and the max_connections slot is given back
exactly once whatever happens to the connect (no sockets: the connect is a fake)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.stats import Stats
from proxy.upstream.circuit_breakers import CircuitBreaker, Resource, RoutingPriority, Thresholds
from proxy.upstream.host import Host
from proxy.upstream.pools import http2 as http2_pool
from proxy.upstream.pools.base import ConnectFailedError, UpstreamStream
from proxy.upstream.pools.http2 import Http2Pool


class FakeRuntime:
    def __init__(self) -> None:
        self.stats = Stats()
        self.prefix = "cluster.b."
        self.breaker = CircuitBreaker("b", RoutingPriority.DEFAULT,
                                      Thresholds(max_connections=1), self.stats)

    def circuit_breaker(self) -> CircuitBreaker:
        return self.breaker

    def connection_closed(self, host: Host, **_: Any) -> None:
        pass


class FakeConnection:
    """What the pool reads of a connection once open: room for streams."""

    def __init__(self) -> None:
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.settled.set_result(None)
        self.opened = 0
        self.holds_slot = False
        self.streams: dict[int, Any] = {}
        self.unsent: set[Any] = set()

    @property
    def capacity(self) -> int:
        return 10 - self.opened

    def open_stream(self) -> UpstreamStream:
        self.opened += 1
        return UpstreamStream(Host("127.0.0.1", 1))


@pytest.fixture
async def slow_connect(monkeypatch: pytest.MonkeyPatch) -> asyncio.Future[Any]:
    """open_pooled waits for the returned future: a connection, or an exception."""
    outcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def open_pooled(pool: Any, factory: Any) -> Any:
        return await asyncio.shield(outcome)

    monkeypatch.setattr(http2_pool, "open_pooled", open_pooled)
    return outcome


def _pool(runtime: FakeRuntime) -> Http2Pool:
    return Http2Pool(runtime, Host("127.0.0.1", 1), connect_timeout=1.0)


async def test_a_waiter_is_served_when_the_first_asker_gives_up(
        slow_connect: asyncio.Future[Any]) -> None:
    runtime = FakeRuntime()
    pool = _pool(runtime)
    first = asyncio.ensure_future(pool.new_stream())
    await asyncio.sleep(0)
    second = asyncio.ensure_future(pool.new_stream())
    await asyncio.sleep(0)
    first.cancel()  # its client went away while the connect was under way
    await asyncio.sleep(0)
    slow_connect.set_result(FakeConnection())
    async with asyncio.timeout(2):
        assert isinstance(await second, UpstreamStream)
    assert first.cancelled()
    assert runtime.breaker.in_use[Resource.CONNECTIONS] == 1  # held by the connection


async def test_a_failed_connect_gives_its_slot_back_once_and_fails_every_waiter(
        slow_connect: asyncio.Future[Any]) -> None:
    runtime = FakeRuntime()
    pool = _pool(runtime)
    waiters = [asyncio.ensure_future(pool.new_stream()) for _ in range(3)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    slow_connect.set_exception(ConnectFailedError("refused"))
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(result, ConnectFailedError) for result in results[1:])
    assert results[1] is not results[2]  # each waiter raises its own
    assert runtime.breaker.in_use[Resource.CONNECTIONS] == 0


async def test_closing_the_pool_fails_the_waiters_of_a_connect(
        slow_connect: asyncio.Future[Any]) -> None:
    runtime = FakeRuntime()
    pool = _pool(runtime)
    waiter = asyncio.ensure_future(pool.new_stream())
    await asyncio.sleep(0)
    pool.close()
    with pytest.raises(ConnectFailedError, match="pool closed"):
        await waiter
    assert runtime.breaker.in_use[Resource.CONNECTIONS] == 0
