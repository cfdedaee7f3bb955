"""Differentials driven by EDS: Envoy reads a ClusterLoadAssignment from a file
(path_config_source; updates by atomic rename in a watched directory) and we apply the same
assignment in-process.

- A host absent from discovery but passing active health checks keeps being routed to until a
  check fails (Envoy service discovery docs), flagged pending_dynamic_removal in both.
- EDS health_status (HEALTHY / UNHEALTHY / DEGRADED) and policy.overprovisioning_factor drive
  the priority split: ring-hash picks per source IP must be identical.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.model.endpoint import translate_cluster_load_assignment
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
from tests.support.tcp_servers import port_of, start_server, start_servers, stop_servers

pytestmark = pytest.mark.conformance

SOURCES = [f"127.0.0.{last}" for last in range(70, 94)]
HC = {"timeout": "1s", "interval": "0.2s", "no_traffic_interval": "0.2s",
      "unhealthy_threshold": 1, "healthy_threshold": 1, "tcp_health_check": {}}


def _assignment(ports: list[int]) -> dict[str, Any]:
    return {"cluster_name": "backend",
            "endpoints": [{"lb_endpoints": [endpoint(port) for port in ports]}]}


def _write_eds(directory: Path, ports: list[int]) -> None:
    document = {"version_info": str(len(ports)), "resources": [{
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        **_assignment(ports)}]}
    staging = directory / "eds.tmp"
    staging.write_text(json.dumps(document))
    os.replace(staging, directory / "eds.json")  # atomic, as Envoy's watcher expects


def _envoy_hosts(envoy: Envoy) -> set[int]:
    _, body = envoy.admin("/clusters")
    return {int(parts[1].rsplit(":", 1)[1]) for parts in
            (line.split("::") for line in body.splitlines())
            if len(parts) == 4 and parts[0] == "backend" and parts[2] == "health_flags"}


def _envoy_flags(envoy: Envoy, port: int) -> str:
    _, body = envoy.admin("/clusters")
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[2] == "health_flags" and parts[1].endswith(f":{port}"):
            return parts[3]
    return ""


def _our_hosts(manager: ClusterManager) -> set[int]:
    runtime = manager.get("backend")
    assert runtime is not None
    return {host.port for host in runtime.hosts}


async def _until(what: str, check: Callable[[], bool]) -> None:
    for _ in range(200):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within 20 s: {what}")


def _apply(manager: ClusterManager, ports: list[int]) -> None:
    manager.update_assignment(translate_cluster_load_assignment(
        parse_message(_assignment(ports), endpoint_pb2.ClusterLoadAssignment)))


async def test_healthy_host_leaving_eds_is_kept_until_it_fails_like_envoy() -> None:
    servers = [await start_server(lambda r, w: w.close())
               for _ in range(2)]
    ports = [port_of(server) for server in servers]
    directory = Path(tempfile.mkdtemp(prefix="eds-"))
    _write_eds(directory, ports)
    base = {"name": "backend", "type": "EDS", "connect_timeout": "1s", "health_checks": [HC]}
    envoy_cluster = {**base, "eds_cluster_config": {"eds_config": {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(directory / "eds.json"),
                               "watched_directory": {"path": str(directory)}}}}}
    envoy = Envoy({"node": {"id": "test", "cluster": "test"},
                   "static_resources": {"clusters": [envoy_cluster]}}, name="envoy-eds")
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([translate_cluster(parse_message({**base, "eds_cluster_config": {}},
                                                    cluster_pb2.Cluster))])
    _apply(manager, ports)
    await manager.start()
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await _until("both hosts up", lambda: _envoy_hosts(envoy) == set(ports))
        async with asyncio.timeout(20):
            await manager.wait_initialized()
        await asyncio.sleep(0.5)  # a few check rounds: both hosts healthy everywhere
        _write_eds(directory, ports[:1])
        _apply(manager, ports[:1])
        await _until("envoy sees the removal", lambda: "pending_dynamic_removal" in
                     _envoy_flags(envoy, ports[1]))
        await asyncio.sleep(0.6)  # several check rounds pass: still kept
        assert await asyncio.to_thread(_envoy_hosts, envoy) == set(ports)
        assert _our_hosts(manager) == set(ports)
        runtime = manager.get("backend")
        assert runtime is not None
        ours = {h["address"]["socket_address"]["port_value"]: h["health_flags"]
                for h in runtime.admin_view()["host_statuses"]}
        assert ours[ports[1]] == ["pending_dynamic_removal"]
        assert (await asyncio.to_thread(_envoy_flags, envoy, ports[1])).strip("/") == \
            "pending_dynamic_removal"
        await stop_servers(servers[1])
        await _until("envoy drops it", lambda: _envoy_hosts(envoy) == {ports[0]})
        await _until("we drop it", lambda: _our_hosts(manager) == {ports[0]})
    finally:
        await manager.close()
        envoy.stop()
        await stop_servers(*servers)


async def test_eds_health_status_and_overprovisioning_factor_route_like_envoy() -> None:
    """EDS-driven priority math: P0 = {HEALTHY, UNHEALTHY (EDS status), DEGRADED}, P1 =
    {HEALTHY}, overprovisioning_factor 100 (not 140), RING_HASH on the source IP: every source
    must go to the same backend through Envoy and through our runtime."""
    servers = await start_servers(answer_port, 4)
    ports = [port_of(server) for server in servers]
    assignment = {
        "cluster_name": "backend",
        "endpoints": [
            {"priority": 0, "lb_endpoints": [
                {**endpoint(ports[0]), "health_status": "HEALTHY"},
                {**endpoint(ports[1]), "health_status": "UNHEALTHY"},
                {**endpoint(ports[2]), "health_status": "DEGRADED"}]},
            {"priority": 1, "lb_endpoints": [endpoint(ports[3])]}],
        "policy": {"overprovisioning_factor": 100},
    }
    directory = Path(tempfile.mkdtemp(prefix="eds-"))
    (directory / "eds.json").write_text(json.dumps({"version_info": "1", "resources": [{
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        **assignment}]}))
    base = {"name": "backend", "type": "EDS", "connect_timeout": "1s", "lb_policy": "RING_HASH"}
    envoy_cluster = {**base, "eds_cluster_config": {"eds_config": {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(directory / "eds.json")}}}}
    listen_port = free_port()
    envoy = Envoy({"node": {"id": "test", "cluster": "test"}, "static_resources": {
        "listeners": [tcp_proxy_listener("front", listen_port, "backend")],
        "clusters": [envoy_cluster]}}, name="envoy-eds-health")
    manager = ClusterManager(Stats(), rng=random.Random(1))
    manager.update([translate_cluster(parse_message({**base, "eds_cluster_config": {}},
                                                    cluster_pb2.Cluster))])
    manager.update_assignment(translate_cluster_load_assignment(
        parse_message(assignment, endpoint_pb2.ClusterLoadAssignment)))
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(wait_for_port, listen_port)
        runtime = manager.get("backend")
        assert runtime is not None
        load = runtime.host_set.load()
        # P0: healthy 1/3 -> 33, degraded 1/3 -> 33; P1: 100. Healthy load first: 33 to P0,
        # the remaining 67 to P1; nothing is left for P0's degraded host.
        assert (load.healthy, load.degraded) == ((33, 67), (0, 0))
        ours = {}
        for source in SOURCES:
            host = runtime.choose_host(LbContext(hash_key=hash_of(source)))
            assert host is not None
            ours[source] = host.port
        envoys = {source: await picked_by_envoy(listen_port, source) for source in SOURCES}
        assert ours == envoys
        assert set(envoys.values()) == {ports[0], ports[3]}
    finally:
        envoy.stop()
        await stop_servers(*servers)
