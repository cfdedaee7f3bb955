"""Differential: weighted ROUND_ROBIN and LEAST_REQUEST split connections like Envoy.

Three backends with weights 1, 2, 3 behind an Envoy tcp_proxy; 120 sequential connections
(none in flight at once, so least-request weighs by weight alone, Envoy's EDF case). Envoy's
schedulers start at a random point: we compare the split, within one pick per host.
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

PICKS = 120


def _cluster(name: str, policy: str, ports: list[int]) -> dict[str, Any]:
    lb_endpoints = []
    for port, weight in zip(ports, (1, 2, 3), strict=True):
        lb_endpoint = endpoint(port)
        lb_endpoint["load_balancing_weight"] = weight
        lb_endpoints.append(lb_endpoint)
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": policy,
            "load_assignment": {"cluster_name": name,
                                "endpoints": [{"lb_endpoints": lb_endpoints}]}}


async def _quiesce(envoy: Envoy) -> None:
    """Wait until Envoy has torn the last connection down, so that no request is active when
    it picks the next host (least request counts active requests)."""
    for _ in range(100):
        if await asyncio.to_thread(envoy.stat, "cluster.backend.upstream_cx_active") == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("Envoy kept an upstream connection open")


@pytest.mark.parametrize("policy", ["ROUND_ROBIN", "LEAST_REQUEST"])
async def test_weighted_split_matches_envoy(policy: str) -> None:
    servers = await start_servers(answer_port, 3)
    ports = [port_of(server) for server in servers]
    cluster = _cluster("backend", policy, ports)
    listen_port = free_port()
    listener = tcp_proxy_listener("front", listen_port, "backend")
    del listener["filter_chains"][0]["filters"][0]["typed_config"]["hash_policy"]
    envoy = Envoy({"static_resources": {"listeners": [listener], "clusters": [cluster]}},
                  name=f"envoy-{policy.lower()}")
    manager = ClusterManager(Stats(), rng=random.Random(6))
    manager.update([translate_cluster(parse_message(cluster, cluster_pb2.Cluster))])
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(wait_for_port, listen_port)
        runtime = manager.get("backend")
        assert runtime is not None
        ours = Counter(runtime.choose_host().port for _ in range(PICKS))
        envoys: Counter[int | None] = Counter()
        for _ in range(PICKS):
            envoys[await picked_by_envoy(listen_port, "127.0.0.1")] += 1
            await _quiesce(envoy)
        for port, share in zip(ports, (20, 40, 60), strict=True):
            assert abs(ours[port] - share) <= 1, (policy, ours)
            assert abs(envoys[port] - ours[port]) <= 1, (policy, envoys, ours)
    finally:
        envoy.stop()
        await stop_servers(*servers)
