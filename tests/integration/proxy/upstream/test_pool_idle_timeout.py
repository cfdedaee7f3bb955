"""The pools' idle timeout (Envoy common_http_protocol_options.idle_timeout): a connection
without a request for that long is closed by us; one used again in time stays."""

from __future__ import annotations

import asyncio

from proxy.codec.events import StreamEnded
from proxy.codec.headers import Headers, RequestHead
from proxy.upstream.circuit_breakers import Thresholds
from proxy.upstream.host import Host
from proxy.upstream.pools.http1 import Http1Pool
from proxy.upstream.pools.http2 import Http2Pool
from tests.integration.proxy.http.test_http1_pool_breakers import Runtime, _answer
from tests.support.http_backends import EchoBackend
from tests.support.tcp_servers import port_of, start_server, stop_servers


class ClosingRuntime(Runtime):
    def __init__(self) -> None:
        super().__init__(Thresholds())
        self.closes: list[tuple[bool, bool]] = []

    def connection_closed(self, host: Host, *, local: bool, with_active_request: bool) -> None:
        super().connection_closed(host, local=local, with_active_request=with_active_request)
        self.closes.append((local, with_active_request))


async def _exchange(pool: Http1Pool | Http2Pool) -> None:
    stream = await pool.new_stream()
    await stream.send_head(RequestHead("GET", "/", "x", "http", Headers()), end_stream=True)
    async with asyncio.timeout(5):
        while not isinstance(await stream.next_event(), StreamEnded):
            pass
    stream.release()


async def test_http1_connection_idle_past_the_timeout_is_closed_by_us() -> None:
    server = await start_server(_answer)
    runtime = ClosingRuntime()
    pool = Http1Pool(runtime, Host("127.0.0.1", port_of(server)), connect_timeout=2,
                     idle_timeout=0.6)
    try:
        await _exchange(pool)
        await asyncio.sleep(0.2)
        await _exchange(pool)  # reused in time: its idle time starts again
        await asyncio.sleep(0.2)
        assert (runtime.opened, runtime.closes, len(pool.idle)) == (1, [], 1)
        await asyncio.sleep(0.9)
        assert (runtime.closes, pool.idle) == ([(True, False)], [])
    finally:
        pool.close()
        await stop_servers(server)


async def test_http1_without_idle_timeout_keeps_the_connection() -> None:
    server = await start_server(_answer)
    runtime = ClosingRuntime()
    pool = Http1Pool(runtime, Host("127.0.0.1", port_of(server)), connect_timeout=2,
                     idle_timeout=None)
    try:
        await _exchange(pool)
        await asyncio.sleep(0.4)
        assert (runtime.closes, len(pool.idle)) == ([], 1)
    finally:
        pool.close()
        await stop_servers(server)


async def test_http2_connection_without_streams_past_the_timeout_is_closed_by_us() -> None:
    with EchoBackend("h2", http2=True) as backend:
        runtime = ClosingRuntime()
        pool = Http2Pool(runtime, Host("127.0.0.1", backend.port), connect_timeout=2,
                         idle_timeout=0.6)
        try:
            await _exchange(pool)
            await asyncio.sleep(0.2)
            await _exchange(pool)
            await asyncio.sleep(0.2)
            assert (runtime.opened, runtime.closes, len(pool.connections)) == (1, [], 1)
            await asyncio.sleep(0.9)
            assert (runtime.closes, pool.connections) == ([(True, False)], [])
        finally:
            pool.close()
