"""Differential: gRPC health checks (grpc.health.v1) in Envoy and in our checker agree.

One grpcio health server; two clusters point at it, one checking service "svc" (SERVING, then
NOT_SERVING, then SERVING again) and one checking a service the server does not know (the
server answers NOT_FOUND). Envoy (HTTP/2 cluster, as gRPC checks need) and our ClusterManager
run the same cluster configs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.stats import Stats
from proxy.upstream.manager import ClusterManager
from tests.conformance.proxy.upstream.backends import endpoint
from tests.support.envoy import Envoy

pytestmark = pytest.mark.conformance

H2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def _cluster(name: str, port: int, service: str) -> dict[str, Any]:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": H2,
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            endpoint(port)]}]},
        "health_checks": [{"timeout": "1s", "interval": "0.2s", "no_traffic_interval": "0.2s",
                           "unhealthy_threshold": 1, "healthy_threshold": 1,
                           "grpc_health_check": {"service_name": service}}],
    }


def _envoy_health(envoy: Envoy) -> dict[str, bool]:
    _, body = envoy.admin("/clusters")
    result = {}
    for line in body.splitlines():
        parts = line.split("::")
        if len(parts) == 4 and parts[2] == "health_flags":
            result[parts[0]] = parts[3] == "healthy"
    return result


def _our_health(manager: ClusterManager) -> dict[str, bool]:
    health_by_cluster = {}
    for name in manager.names():
        runtime = manager.get(name)
        assert runtime is not None
        health_by_cluster[name] = runtime.hosts[0].healthy
    return health_by_cluster


async def _until(what: str, check: Callable[[], bool]) -> None:
    for _ in range(200):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not converged within 20 s: {what}")


async def test_grpc_health_verdicts_match_envoy() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("svc", health_pb2.HealthCheckResponse.SERVING)
    clusters = [_cluster("known", port, "svc"), _cluster("unknown", port, "nope")]
    envoy = Envoy({"static_resources": {"clusters": clusters}}, name="envoy-grpc-hc")
    manager = ClusterManager(Stats(), rng=random.Random(2))
    manager.update([translate_cluster(parse_message(c, cluster_pb2.Cluster)) for c in clusters])
    await manager.start()
    try:
        await asyncio.to_thread(envoy.wait_ready)
        for serving, expected in ((health_pb2.HealthCheckResponse.SERVING, True),
                                  (health_pb2.HealthCheckResponse.NOT_SERVING, False),
                                  (health_pb2.HealthCheckResponse.SERVING, True)):
            await servicer.set("svc", serving)
            want = {"known": expected, "unknown": False}
            await _until(f"envoy {want}", lambda want=want: _envoy_health(envoy) == want)
            await _until(f"ours {want}", lambda want=want: _our_health(manager) == want)
    finally:
        await manager.close()
        envoy.stop()
        await server.stop(None)
