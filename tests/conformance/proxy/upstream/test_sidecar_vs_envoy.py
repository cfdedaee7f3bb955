"""End to end: the same bootstrap given to real Envoy and to `pointsman proxy` (a process).

A tcp_proxy listener hashing on the source IP in front of a health-checked RING_HASH cluster
with two priorities. Both proxies must report the same host health on /clusters and send every
source address to the same backend; then a backend dies and they must agree again.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.proxy.upstream.backends import (
    answer_port,
    endpoint,
    picked_by_envoy,
    tcp_proxy_listener,
)
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.tcp_servers import port_of, start_servers, stop_servers

pytestmark = pytest.mark.conformance

SOURCES = [f"127.0.0.{last}" for last in range(40, 64)]


def _bootstrap(listen_port: int, p0: list[int], p1: list[int]) -> dict[str, Any]:
    cluster = {
        "name": "backend", "type": "STATIC", "connect_timeout": "1s", "lb_policy": "RING_HASH",
        "load_assignment": {"cluster_name": "backend", "endpoints": [
            {"priority": 0, "lb_endpoints": [endpoint(port) for port in p0]},
            {"priority": 1, "lb_endpoints": [endpoint(port) for port in p1]}]},
        "health_checks": [{"timeout": "1s", "interval": "0.2s", "no_traffic_interval": "0.2s",
                           "unhealthy_threshold": 1, "healthy_threshold": 1,
                           "tcp_health_check": {}}],
    }
    return {"static_resources": {
        "listeners": [tcp_proxy_listener("front", listen_port, "backend")],
        "clusters": [cluster]}}


def _unhealthy(admin: Callable[[str], tuple[int, str]]) -> set[int]:
    _, body = admin("/clusters")
    ports = set()
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "backend" and parts[2] == "health_flags" \
                and parts[3] != "healthy":
            ports.add(int(parts[1].rsplit(":", 1)[1]))
    return ports


async def _converge(admin: Callable[[str], tuple[int, str]], unhealthy: set[int],
                    what: str) -> None:
    for _ in range(200):  # up to 20 s on a busy machine
        if await asyncio.to_thread(_unhealthy, admin) == unhealthy:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not report {unhealthy} unhealthy within 20 s")


async def _picks(listen_port: int) -> dict[str, int | None]:
    return {source: await picked_by_envoy(listen_port, source) for source in SOURCES}


async def test_same_bootstrap_same_health_same_backends() -> None:
    servers = await start_servers(answer_port, 3)
    up = [port_of(server) for server in servers]
    down = free_port()
    envoy_port, ours_port = free_port(), free_port()
    bootstrap = _bootstrap(envoy_port, [up[0], down], [up[1], up[2]])
    envoy = Envoy(bootstrap, name="envoy-e2e")
    ours_bootstrap = copy.deepcopy(bootstrap)
    ours_bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"] = ours_port
    ours = Pointsman(ours_bootstrap, name="pointsman-e2e")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        for port in (envoy_port, ours_port):
            await asyncio.to_thread(wait_for_port, port)
        await _converge(envoy.admin, {down}, "Envoy")
        await _converge(ours.admin, {down}, "Pointsman")
        before = await _picks(envoy_port)
        assert await _picks(ours_port) == before
        assert len(set(before.values())) >= 2

        await stop_servers(servers[0])  # P0's last live host dies: all traffic fails over to P1
        await _converge(envoy.admin, {down, up[0]}, "Envoy")
        await _converge(ours.admin, {down, up[0]}, "Pointsman")
        after = await _picks(envoy_port)
        assert await _picks(ours_port) == after
        assert set(after.values()) <= {up[1], up[2]}
    finally:
        envoy.stop()
        ours.stop()
        await stop_servers(*servers)
