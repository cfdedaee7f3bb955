"""Differential: connect failures eject the same host, with the same stats, in Envoy and here.

Envoy: a tcp_proxy listener in front of a ROUND_ROBIN cluster of three hosts, one refusing
connections, with outlier detection (consecutive_5xx: 2; without split_external_local_origin
errors a connect failure counts as a 503). We open connections through Envoy until it ejects.
Pointsman: the same cluster config, the same kind of traffic through `choose_host` +
`connect_host` against the same backends. Both must eject exactly the refusing host, once,
and report it under the same stat names.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
from proxy.upstream.connect import connect_host
from proxy.upstream.host import HealthFlag
from proxy.upstream.manager import ClusterManager
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

STATS = ("outlier_detection.ejections_active", "outlier_detection.ejections_enforced_total",
         "outlier_detection.ejections_enforced_consecutive_5xx",
         "outlier_detection.ejections_detected_consecutive_5xx")


def _ejected_ports(proxy: Envoy | Pointsman) -> set[int]:
    _, body = proxy.admin("/clusters")
    ejected = set()
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[2] == "health_flags" and "failed_outlier_check" in parts[3]:
            ejected.add(int(parts[1].rsplit(":", 1)[1]))
    return ejected


async def test_connect_failures_eject_the_refusing_host_in_both() -> None:
    servers = await start_servers(answer_port, 2)
    up = [port_of(server) for server in servers]
    down = free_port()
    cluster = {
        "name": "backend", "type": "STATIC", "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            endpoint(up[0]), endpoint(down), endpoint(up[1])]}]},
        "outlier_detection": {"consecutive_5xx": 2, "interval": "30s",
                              "base_ejection_time": "60s", "max_ejection_percent": 50},
    }
    listen_port = free_port()
    envoy = Envoy({"static_resources": {"listeners": [tcp_proxy_listener("front", listen_port,
                                                                "backend")],
                                        "clusters": [cluster]}}, name="envoy-outlier")
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([translate_cluster(parse_message(cluster, cluster_pb2.Cluster))])
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(wait_for_port, listen_port)
        for _ in range(12):  # round robin: the refusing host is tried every third connection
            await picked_by_envoy(listen_port, "127.0.0.1")
        runtime = manager.get("backend")
        assert runtime is not None
        for _ in range(12):
            host = runtime.choose_host()
            assert host is not None
            with contextlib.suppress(OSError):
                sock = await connect_host(runtime, host)
                sock.close()
                runtime.connection_closed(host, local=True, with_active_request=False)
        ours_ejected = {h.port for h in runtime.hosts if h.flags & HealthFlag.FAILED_OUTLIER_CHECK}
        assert await asyncio.to_thread(_ejected_ports, envoy) == ours_ejected == {down}
        for name in STATS:
            ours = (runtime.stats.gauges.get(f"cluster.backend.{name}")
                    or runtime.stats.counters.get(f"cluster.backend.{name}"))
            assert ours is not None, name
            envoy_value = await asyncio.to_thread(envoy.stat, f"cluster.backend.{name}")
            assert (name, ours.value) == (name, envoy_value)
    finally:
        envoy.stop()
        await stop_servers(*servers)


async def test_sidecar_ejects_like_envoy_through_tcp_proxy() -> None:
    """The same, end to end: the bootstrap given to `pointsman proxy` and to Envoy."""
    servers = await start_servers(answer_port, 2)
    up = [port_of(server) for server in servers]
    down = free_port()
    cluster = {
        "name": "backend", "type": "STATIC", "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            endpoint(up[0]), endpoint(down), endpoint(up[1])]}]},
        "outlier_detection": {"consecutive_5xx": 2, "interval": "30s",
                              "base_ejection_time": "60s", "max_ejection_percent": 50},
    }
    ports = {"envoy": free_port(), "ours": free_port()}
    proxies = {
        "envoy": Envoy({"static_resources": {"listeners": [tcp_proxy_listener(
            "front", ports["envoy"], "backend")], "clusters": [cluster]}}, name="envoy-od"),
        "ours": Pointsman({"static_resources": {"listeners": [tcp_proxy_listener(
            "front", ports["ours"], "backend")], "clusters": [cluster]}}, name="pm-od"),
    }
    try:
        results = {}
        for name, proxy in proxies.items():
            await asyncio.to_thread(proxy.wait_ready)
            for _ in range(12):
                await picked_by_envoy(ports[name], "127.0.0.1")
            stats = [await asyncio.to_thread(proxy.stat, f"cluster.backend.{stat}")
                     for stat in STATS]
            results[name] = (await asyncio.to_thread(_ejected_ports, proxy), stats)
        assert results["envoy"] == ({down}, [1, 1, 1, 1])
        assert results["ours"] == results["envoy"]
    finally:
        for proxy in proxies.values():
            proxy.stop()
        await stop_servers(*servers)
