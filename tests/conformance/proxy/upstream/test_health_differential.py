"""Differential: real Envoy and our health checker watch the same three backends.

One Envoy bootstrap (a tcp_proxy listener in front of a health-checked static cluster) is given
to Envoy; its cluster is translated by `proxy.model.cluster` and run by our ClusterManager in
this process. Backends are `python -m http.server` processes: two serve /ok.txt, one does not
(404: an active failure). We compare Envoy's /clusters health flags with our hosts' health,
then kill a backend and compare again once both have converged, then bring it back.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
from proxy.upstream.host import Health
from proxy.upstream.manager import ClusterManager
from tests.support.envoy import Envoy
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, python_argv

pytestmark = pytest.mark.conformance


def _cluster(ports: list[int]) -> dict[str, Any]:
    return {
        "name": "backend",
        "type": "STATIC",
        "connect_timeout": "1s",
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {"cluster_name": "backend", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}}}}
            for port in ports]}]},
        "health_checks": [{
            "timeout": "1s", "interval": "0.2s", "no_traffic_interval": "0.2s",
            "unhealthy_threshold": 2, "healthy_threshold": 1,
            "http_health_check": {"path": "/ok.txt"},
        }],
    }


def _bootstrap(cluster: dict[str, Any], listen_port: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [{
            "name": "front",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                             "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": "front", "cluster": "backend"}}]}],
        }],
        "clusters": [cluster],
    }}


def _backend(port: int, root: Path) -> ManagedProcess:
    process = ManagedProcess(python_argv("-m", "http.server", str(port), "--bind", "127.0.0.1",
                                         "--directory", str(root)), name=f"backend-{port}")
    wait_for_port(port)
    return process


def _envoy_health(envoy: Envoy) -> dict[int, bool]:
    """port -> healthy, from Envoy's /clusters text (`backend::IP:PORT::health_flags::...`)."""
    _, body = envoy.admin("/clusters")
    result: dict[int, bool] = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == "backend" and parts[2] == "health_flags":
            port = int(parts[1].rsplit(":", 1)[1])
            result[port] = parts[3] == "healthy"
    return result


def _our_health(manager: ClusterManager) -> dict[int, bool]:
    runtime = manager.get("backend")
    assert runtime is not None
    return {host.port: host.health is Health.HEALTHY for host in runtime.hosts}


async def _until(what: str, check: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not converged within {seconds}s: {what}")


async def test_envoy_and_pointsman_agree_on_backend_health() -> None:
    good_root = Path(tempfile.mkdtemp(prefix="hc-good-"))
    (good_root / "ok.txt").write_text("ok")
    bad_root = Path(tempfile.mkdtemp(prefix="hc-bad-"))
    ports = [free_port(), free_port(), free_port()]
    backends = {ports[0]: _backend(ports[0], good_root), ports[1]: _backend(ports[1], good_root),
                ports[2]: _backend(ports[2], bad_root)}
    cluster = _cluster(ports)
    envoy = Envoy(_bootstrap(cluster, free_port()), name="envoy-hc")
    manager = ClusterManager(Stats(), rng=random.Random(5))
    manager.update([translate_cluster(parse_message(cluster, cluster_pb2.Cluster))])
    await manager.start()
    try:
        await asyncio.to_thread(envoy.wait_ready)
        expected = {ports[0]: True, ports[1]: True, ports[2]: False}
        await _until("envoy initial", lambda: _envoy_health(envoy) == expected)
        await _until("ours initial", lambda: _our_health(manager) == expected)
        assert _our_health(manager) == _envoy_health(envoy)

        backends.pop(ports[1]).stop()  # a host is lost
        expected = {ports[0]: True, ports[1]: False, ports[2]: False}
        await _until("envoy after loss", lambda: _envoy_health(envoy) == expected)
        await _until("ours after loss", lambda: _our_health(manager) == expected)
        assert _our_health(manager) == _envoy_health(envoy)

        backends[ports[1]] = _backend(ports[1], good_root)  # and comes back
        expected = {ports[0]: True, ports[1]: True, ports[2]: False}
        await _until("envoy after return", lambda: _envoy_health(envoy) == expected)
        await _until("ours after return", lambda: _our_health(manager) == expected)
        assert _our_health(manager) == _envoy_health(envoy)
    finally:
        await manager.close()
        envoy.stop()
        for backend in backends.values():
            backend.stop()
