"""Differential: locality-weighted round robin splits traffic like Envoy.

Locality "a" (weight 1, one host) and locality "b" (weight 3, two hosts of which one refuses
connections and fails its health check): b's effective weight is 3 x min(1, 1.4 x 1/2) = 2.1,
so of 310 connections Envoy sends 100 to a and 210 to b's live host. Envoy's schedulers start
at a random point, so we compare the split (within one pick), not the sequence.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
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

PICKS = 310


def _cluster(a: int, b_up: int, b_down: int) -> dict[str, Any]:
    return {
        "name": "backend", "type": "STATIC", "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "common_lb_config": {"locality_weighted_lb_config": {}},
        "load_assignment": {"cluster_name": "backend", "endpoints": [
            {"locality": {"zone": "a"}, "load_balancing_weight": 1,
             "lb_endpoints": [endpoint(a)]},
            {"locality": {"zone": "b"}, "load_balancing_weight": 3,
             "lb_endpoints": [endpoint(b_up), endpoint(b_down)]}]},
        "health_checks": [{"timeout": "1s", "interval": "0.2s", "no_traffic_interval": "0.2s",
                           "unhealthy_threshold": 1, "healthy_threshold": 1,
                           "tcp_health_check": {}}],
    }


def _envoy_unhealthy(envoy: Envoy) -> set[int]:
    _, body = envoy.admin("/clusters")
    return {int(parts[1].rsplit(":", 1)[1]) for parts in
            (line.split("::") for line in body.splitlines())
            if len(parts) == 4 and parts[2] == "health_flags" and parts[3] != "healthy"}


async def test_locality_weighted_split_matches_envoy() -> None:
    servers = await start_servers(answer_port, 2)
    a, b_up = (port_of(server) for server in servers)
    b_down = free_port()
    cluster = _cluster(a, b_up, b_down)
    listen_port = free_port()
    listener = tcp_proxy_listener("front", listen_port, "backend")
    del listener["filter_chains"][0]["filters"][0]["typed_config"]["hash_policy"]
    envoy = Envoy({"static_resources": {"listeners": [listener], "clusters": [cluster]}},
                  name="envoy-locality")
    manager = ClusterManager(Stats(), rng=random.Random(4))
    manager.update([translate_cluster(parse_message(cluster, cluster_pb2.Cluster))])
    await manager.start()
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(wait_for_port, listen_port)
        async with asyncio.timeout(20):
            await manager.wait_initialized()
        for _ in range(200):
            if await asyncio.to_thread(_envoy_unhealthy, envoy) == {b_down}:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("Envoy did not mark the refusing host unhealthy")
        runtime = manager.get("backend")
        assert runtime is not None
        ours = Counter(runtime.choose_host().port for _ in range(PICKS))
        envoys = Counter([await picked_by_envoy(listen_port, "127.0.0.1")
                          for _ in range(PICKS)])
        assert set(envoys) == set(ours) == {a, b_up}
        assert abs(ours[a] - 100) <= 1
        assert abs(envoys[a] - ours[a]) <= 1
    finally:
        await manager.close()
        envoy.stop()
        await stop_servers(*servers)
