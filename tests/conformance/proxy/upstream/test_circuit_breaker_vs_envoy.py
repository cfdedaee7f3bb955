"""End to end: max_connections in the same bootstrap, Envoy vs `pointsman proxy`.

A tcp_proxy in front of a cluster with `circuit_breakers: max_connections: 1`. One long-lived
connection goes through; the second is refused at once (closed without reaching a backend) and
counted as `cluster.backend.upstream_cx_overflow`, with the `cx_open` gauge set, in both.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from tests.conformance.proxy.upstream.backends import endpoint, tcp_proxy_listener
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Say hello, then keep the connection until the client goes away."""
    writer.write(b"hello\n")
    try:
        await writer.drain()
        await reader.read()
    except ConnectionError:
        pass
    finally:
        writer.close()


def _bootstrap(listen_port: int, backend_port: int) -> dict[str, Any]:
    listener = tcp_proxy_listener("front", listen_port, "backend")
    del listener["filter_chains"][0]["filters"][0]["typed_config"]["hash_policy"]
    return {"static_resources": {"listeners": [listener], "clusters": [{
        "name": "backend", "type": "STATIC", "connect_timeout": "1s",
        "circuit_breakers": {"thresholds": [{"max_connections": 1}]},
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            endpoint(backend_port)]}]}}]}}


async def _behaviour(listen_port: int, stat: Any) -> tuple[bytes, bytes, int, int]:
    first_reader, first_writer = await asyncio.open_connection("127.0.0.1", listen_port)
    try:
        async with asyncio.timeout(10):
            greeting = await first_reader.readline()
            second_reader, second_writer = await asyncio.open_connection("127.0.0.1",
                                                                         listen_port)
            try:
                refused = await second_reader.read()  # EOF: closed without a backend
            except ConnectionError:
                refused = b""
            finally:
                second_writer.close()
        overflow = await asyncio.to_thread(stat, "cluster.backend.upstream_cx_overflow")
        cx_open = await asyncio.to_thread(
            stat, "cluster.backend.circuit_breakers.default.cx_open")
        return greeting, refused, overflow, cx_open
    finally:
        first_writer.close()


async def test_max_connections_refuses_and_counts_like_envoy() -> None:
    server = await start_server(_hold)
    backend_port = port_of(server)
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(_bootstrap(envoy_port, backend_port), name="envoy-breaker")
    ours = Pointsman(copy.deepcopy(_bootstrap(ours_port, backend_port)), name="pm-breaker")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        for port in (envoy_port, ours_port):
            await asyncio.to_thread(wait_for_port, port)  # (uses, then frees, the one slot)
        await asyncio.sleep(0.3)
        envoy_result = await _behaviour(envoy_port, envoy.stat)
        ours_result = await _behaviour(ours_port, ours.stat)
        assert envoy_result == (b"hello\n", b"", 1, 1)
        assert ours_result == envoy_result
    finally:
        envoy.stop()
        ours.stop()
        await stop_servers(server)
