"""Differential: how upstream connections end, counted in Envoy's upstream_cx_destroy family
(`_local` / `_remote`, and `_with_active_rq` when a request was unfinished on the connection),
Envoy vs `pointsman proxy`, one bootstrap.

Envoy's ConnPoolImplBase counts every closed connection (a refused connect too) by the side
that closed it; a request still incomplete on it adds the `_with_active_rq` counters. Cases:
timeouts and resets with and without retries (the backend of the code-stats differential,
which answers `connection: close`), a keep-alive connection the backend closes while idle, a
refused connect, our own idle_timeout, and h2c connections whose backend goes away idle or
mid-request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.conformance.proxy.http.test_upstream_code_stats_vs_envoy import (
    ROUTES,
    FailFirstBackend,
)
from tests.conformance.proxy.http.test_upstream_code_stats_vs_envoy import (
    _bootstrap as code_stats_bootstrap,
)
from tests.integration.proxy.http.clients import H1Client
from tests.support.bootstraps import H2_OPTIONS, static_cluster
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

STATS = ("upstream_cx_destroy", "upstream_cx_destroy_local", "upstream_cx_destroy_remote",
         "upstream_cx_destroy_with_active_rq", "upstream_cx_destroy_local_with_active_rq",
         "upstream_cx_destroy_remote_with_active_rq", "upstream_cx_total",
         "upstream_cx_connect_fail", "upstream_cx_active")
IDLE_TIMEOUT = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "common_http_protocol_options": {"idle_timeout": "0.3s"},
    "explicit_http_config": {"http_protocol_options": {}}}}


async def _answer_then_close_while_idle(reader: asyncio.StreamReader,
                                        writer: asyncio.StreamWriter) -> None:
    """One keep-alive response, then the backend closes the idle connection."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.2)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _answer_keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _cluster(name: str, port: int, options: dict[str, Any] | None = None) -> dict[str, Any]:
    extra = {"typed_extension_protocol_options": options} if options else {}
    return static_cluster(name, [port], connect_timeout="2s", **extra)


def _bootstrap(port: int, ports: dict[str, int]) -> dict[str, Any]:
    """The code-stats bootstrap (cluster `backend`) plus one cluster per other case, routed by
    the first path segment."""
    bootstrap = code_stats_bootstrap(port, ports["backend"])
    extra = [_cluster("idle_peer", ports["idle_peer"]), _cluster("refused", ports["refused"]),
             _cluster("idle_timeout", ports["idle_timeout"], IDLE_TIMEOUT),
             _cluster("h2_idle", ports["h2_idle"], H2_OPTIONS),
             _cluster("h2_dies", ports["h2_dies"], H2_OPTIONS)]
    bootstrap["static_resources"]["clusters"].extend(extra)
    hcm = bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    routes[:0] = [{"match": {"prefix": f"/{c['name']}/"}, "route": {"cluster": c["name"]}}
                  for c in extra]
    return bootstrap


async def _stats(proxy: AdminProxy, cluster: str) -> dict[str, int]:
    return {name: await asyncio.to_thread(proxy.stat, f"cluster.{cluster}.{name}")
            for name in STATS}


async def _get(port: int, path: str, *headers: tuple[str, str]) -> int:
    async with asyncio.timeout(10), H1Client(port) as client:
        return (await client.request("GET", path, headers=list(headers))).status


async def _measure(proxy: AdminProxy, cluster: str, action: Callable[[], Awaitable[int]],
                   settle: float = 0.8) -> tuple[int, dict[str, int]]:
    """The status `action` got and every stat of `cluster` it changed."""
    before = await _stats(proxy, cluster)
    status = await action()
    await asyncio.sleep(settle)  # the connection's close comes after the response
    after = await _stats(proxy, cluster)
    return status, {name: after[name] - before[name] for name in STATS
                    if after[name] != before[name]}


async def _observe(proxy_type: type[AdminProxy], name: str, fail_first_port: int
                   ) -> dict[str, Any]:
    idle_peer = await start_server(_answer_then_close_while_idle)
    keep_alive = await start_server(_answer_keep_alive)
    h2_idle = EchoBackend("h2-idle", http2=True).start()
    h2_dies = EchoBackend("h2-dies", http2=True).start()
    port = free_port()
    ports = {"backend": fail_first_port, "idle_peer": port_of(idle_peer),
             "refused": free_port(), "idle_timeout": port_of(keep_alive),
             "h2_idle": h2_idle.port, "h2_dies": h2_dies.port}
    proxy = proxy_type(_bootstrap(port, ports), name=f"{name}-cx-destroy")
    seen: dict[str, Any] = {}
    try:
        await asyncio.to_thread(proxy.wait_ready)
        for route in ROUTES:
            for kind in ("slow", "reset", "ok"):
                seen[f"{route}/{kind}"] = await _measure(
                    proxy, "backend", lambda p=f"/{route}/{name}/{kind}": _get(port, p))
        for cluster in ("idle_peer", "refused", "idle_timeout", "h2_idle"):
            seen[cluster] = await _measure(proxy, cluster,
                                           lambda c=cluster: _get(port, f"/{c}/x"))

        async def goes_away_while_idle() -> int:
            await asyncio.to_thread(h2_idle.stop)
            return 0

        seen["h2_idle/peer_gone"] = await _measure(proxy, "h2_idle", goes_away_while_idle)

        async def dies_mid_request() -> int:
            request = asyncio.ensure_future(_get(port, "/h2_dies/x", ("x-echo-delay", "3")))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(h2_dies.stop)
            return await request

        seen["h2_dies"] = await _measure(proxy, "h2_dies", dies_mid_request)
    finally:
        proxy.stop()
        h2_idle.stop()
        h2_dies.stop()
        await stop_servers(idle_peer, keep_alive)
    return seen


async def test_upstream_connection_ends_are_counted_like_envoy() -> None:
    fail_first = FailFirstBackend()
    fail_first_port = await fail_first.start()
    try:
        expected = await _observe(Envoy, "envoy", fail_first_port)
        actual = await _observe(Pointsman, "ours", fail_first_port)
    finally:
        await fail_first.close()
    for case in expected:
        print(f"{case}\n  envoy {expected[case]}\n  ours  {actual[case]}")
    # Envoy's own figures pin what the cases exercise.
    assert expected["single/reset"] == (503, {
        "upstream_cx_destroy": 1, "upstream_cx_destroy_remote": 1,
        "upstream_cx_destroy_with_active_rq": 1, "upstream_cx_destroy_remote_with_active_rq": 1,
        "upstream_cx_total": 1})
    assert expected["single/slow"][1]["upstream_cx_destroy_local_with_active_rq"] == 1
    assert expected["refused"][1]["upstream_cx_destroy_remote"] == 1
    assert expected["idle_timeout"][1].get("upstream_cx_destroy_local") == 1
    assert expected["h2_dies"][1].get("upstream_cx_destroy_remote_with_active_rq") == 1
    assert expected["h2_idle/peer_gone"][1].get("upstream_cx_destroy_remote") == 1
    assert actual == expected
