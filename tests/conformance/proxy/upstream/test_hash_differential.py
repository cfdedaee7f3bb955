"""Differential: Envoy and Pointsman pick the same backend for the same source IP.

Envoy runs tcp_proxy listeners with `hash_policy: [{source_ip: {}}]` in front of a RING_HASH
and a MAGLEV cluster of three weighted backends (in-process servers that answer with their own
port). For 24 loopback source addresses (127.0.0.10-33) we ask Envoy which backend it picked and
compare with `ClusterRuntime.choose_host(LbContext(hash_key=hash_of(source_ip)))` built from the
same cluster config: this checks xxHash64 keys, ring construction and lookup, the Maglev table
and the priority pick bit for bit.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
from proxy.upstream.lb.base import LbContext, hash_of
from proxy.upstream.manager import ClusterManager
from tests.conformance.proxy.upstream.backends import (
    answer_port,
    endpoint,
    picked_by_envoy,
    tcp_proxy_listener,
)
from tests.support.envoy import Envoy
from tests.support.ports import free_port, wait_for_port
from tests.support.tcp_servers import port_of, start_servers, stop_servers

pytestmark = pytest.mark.conformance

SOURCES = [f"127.0.0.{last}" for last in range(10, 34)]


def _cluster(name: str, policy: str, ports: list[int]) -> dict[str, Any]:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": policy,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}}},
             "load_balancing_weight": weight}
            for port, weight in zip(ports, (1, 2, 3), strict=True)]}]},
    }


def _typed(name: str, extension: str, ports: list[int]) -> dict[str, Any]:
    """The same cluster with `load_balancing_policy` (typed extension) instead of the enum."""
    cluster = _cluster(name, "ROUND_ROBIN", ports)
    del cluster["lb_policy"]
    cluster["load_balancing_policy"] = {"policies": [{"typed_extension_config": {
        "name": name, "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.load_balancing_policies."
                     + extension}}}]}
    return cluster


async def test_ring_hash_and_maglev_choose_the_same_backend_as_envoy() -> None:
    servers = await start_servers(answer_port, 3)
    ports = [port_of(server) for server in servers]
    clusters = [_cluster("ring", "RING_HASH", ports), _cluster("maglev", "MAGLEV", ports),
                _typed("typed_ring", "ring_hash.v3.RingHash", ports),
                _typed("typed_maglev", "maglev.v3.Maglev", ports)]
    listen = {cluster["name"]: free_port() for cluster in clusters}
    envoy = Envoy({"static_resources": {
        "listeners": [tcp_proxy_listener(f"l_{name}", port, name) for name, port in listen.items()],
        "clusters": clusters}}, name="envoy-hash")
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([translate_cluster(parse_message(c, cluster_pb2.Cluster)) for c in clusters])
    try:
        await asyncio.to_thread(envoy.wait_ready)
        for port in listen.values():
            await asyncio.to_thread(wait_for_port, port)
        for name, listen_port in listen.items():
            runtime = manager.get(name)
            assert runtime is not None
            ours = {}
            envoys = {}
            for source in SOURCES:
                host = runtime.choose_host(LbContext(hash_key=hash_of(source)))
                assert host is not None
                ours[source] = host.port
                envoys[source] = await picked_by_envoy(listen_port, source)
            assert ours == envoys, name
            assert len(set(envoys.values())) > 1, "all sources hashed to one host"
    finally:
        envoy.stop()
        await stop_servers(*servers)


def _envoy_unhealthy_ports(envoy: Envoy, cluster: str) -> set[int]:
    _, body = envoy.admin("/clusters")
    ports = set()
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[2] == "health_flags" \
                and parts[3] != "healthy":
            ports.add(int(parts[1].rsplit(":", 1)[1]))
    return ports


@pytest.mark.parametrize(("down_in_p0", "down_in_p1", "expected_load", "panic"), [
    # P0 50% healthy: 50 x 1.4 = 70% stays, 30% spills to P1.
    (1, 0, (70, 30), (False, False)),
    # P0 33% healthy (below the 50% panic threshold) but P1 can take the rest: no panic.
    (2, 0, (46, 54), (False, False)),
    # P0 25% and P1 40% healthy: availability 35 + 56 < 100 and both below the panic
    # threshold: all priorities panic, so load follows host counts (4 vs 5 hosts).
    (3, 3, (45, 55), (True, True)),
    # P0 20% (panic) and P1 50% healthy: 28 + 70 < 100, only P0 panics; load keeps the
    # availability split.
    (4, 2, (29, 71), (True, False)),
])
async def test_priority_failover_and_panic_match_envoy(
        down_in_p0: int, down_in_p1: int, expected_load: tuple[int, int],
        panic: tuple[bool, bool]) -> None:
    """P0 = {up, down...}, P1 = {up, up, down...}, health-checked, RING_HASH: the priority is
    chosen by hash % 100 and the host by the ring, so Envoy and we must agree on every source
    address. In panic a priority balances over all its hosts, down ones included: Envoy then
    closes the connection (None), and our pick is one of the down hosts."""
    servers = await start_servers(answer_port, 3)
    up = [port_of(server) for server in servers]
    down_p0 = sorted({free_port() for _ in range(down_in_p0)})
    down_p1 = sorted({free_port() for _ in range(down_in_p1)} - set(down_p0))
    down = set(down_p0) | set(down_p1)
    cluster = {
        "name": "failover", "type": "STATIC", "connect_timeout": "1s", "lb_policy": "RING_HASH",
        "load_assignment": {"cluster_name": "failover", "endpoints": [
            {"priority": 0, "lb_endpoints": [endpoint(p) for p in (up[0], *down_p0)]},
            {"priority": 1, "lb_endpoints": [endpoint(p) for p in (up[1], up[2], *down_p1)]}]},
        "health_checks": [{"timeout": "1s", "interval": "0.2s", "no_traffic_interval": "0.2s",
                           "unhealthy_threshold": 1, "healthy_threshold": 1,
                           "tcp_health_check": {}}],
    }
    listen_port = free_port()
    envoy = Envoy({"static_resources": {
        "listeners": [tcp_proxy_listener("l_failover", listen_port, "failover")],
        "clusters": [cluster]}}, name="envoy-failover")
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([translate_cluster(parse_message(cluster, cluster_pb2.Cluster))])
    await manager.start()
    try:
        await asyncio.to_thread(envoy.wait_ready)
        async with asyncio.timeout(20):
            await manager.wait_initialized()
        for _ in range(200):  # Envoy's first check round: poll /clusters for up to 20 s
            if await asyncio.to_thread(_envoy_unhealthy_ports, envoy, "failover") == down:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("Envoy did not mark the down hosts unhealthy in 20 s")
        runtime = manager.get("failover")
        assert runtime is not None
        assert {h.port for h in runtime.hosts if not h.healthy} == down
        load = runtime.host_set.load()
        assert load.healthy == expected_load and load.panic == panic
        ours: dict[str, int | None] = {}
        for source in SOURCES:
            host = runtime.choose_host(LbContext(hash_key=hash_of(source)))
            assert host is not None
            ours[source] = None if host.port in down else host.port
        envoys = {source: await picked_by_envoy(listen_port, source) for source in SOURCES}
        assert ours == envoys
        # Not degenerate: P1 got traffic (P0's live host may get none when it owns little of
        # the panic ring; the ring depends on the random ports).
        assert {up[1], up[2]} & set(envoys.values())
        assert len(set(envoys.values())) >= 2
        assert (None in envoys.values()) is any(panic)
    finally:
        await manager.close()
        envoy.stop()
        await stop_servers(*servers)
