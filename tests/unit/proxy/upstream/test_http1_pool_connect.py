"""The HTTP/1.1 pool's connect tasks: a connect that fails for a reason other than the network
(a bug) fails the requests waiting for it and is logged, rather than leaving them waiting and
the error lost (no sockets: the connect is a fake)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.upstream.host import Host
from proxy.upstream.pools import http1 as http1_pool
from proxy.upstream.pools.base import ConnectFailedError
from proxy.upstream.pools.http1 import Http1Pool


class NoStatsRuntime:
    def connection_closed(self, host: Host, **_: Any) -> None:
        pass


async def test_an_unexpected_connect_error_fails_the_waiters_and_is_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    async def open_pooled(pool: Any, factory: Any) -> Any:
        raise RuntimeError("a bug in the connect path")

    monkeypatch.setattr(http1_pool, "open_pooled", open_pooled)
    pool = Http1Pool(NoStatsRuntime(), Host("127.0.0.1", 1), connect_timeout=1.0)
    with pytest.raises(ConnectFailedError, match="a bug in the connect path"):
        await pool.new_stream()
    for _ in range(3):  # the connect task's done callbacks run
        await asyncio.sleep(0)
    assert "a bug in the connect path" in caplog.text
    assert pool.connecting == 0
