"""Active health checks against real loopback servers (TCP, HTTP/1.1, gRPC health), driven by
the ClusterManager's runner. Intervals are short; every wait is a generous bounded poll."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from proxy.model.cluster import translate_cluster
from proxy.model.endpoint import Endpoint, LoadAssignment, Locality, LocalityEndpoints
from proxy.stats import Stats
from proxy.upstream.host import Health
from proxy.upstream.manager import ClusterManager
from tests.support.ports import free_port
from tests.support.tcp_servers import port_of, start_server, stop_servers
from tests.unit.proxy.upstream.builders import cluster_proto, static_endpoints

FAST = {"timeout": "0.5s", "interval": "0.05s", "no_traffic_interval": "0.05s",
        "unhealthy_threshold": 2, "healthy_threshold": 1}


async def _until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll `check` every 20 ms for up to `seconds` (generous: the machine is shared)."""
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {seconds}s")


@contextlib.asynccontextmanager
async def _manager(ports: list[int], check: dict[str, Any]) -> AsyncIterator[ClusterManager]:
    config = translate_cluster(cluster_proto(
        load_assignment={"cluster_name": "backend", "endpoints": [static_endpoints(*ports)]},
        health_checks=[{**FAST, **check}]))
    manager = ClusterManager(Stats(), rng=random.Random(3))
    manager.update([config])
    await manager.start()
    try:
        yield manager
    finally:
        await manager.close()


def _health(manager: ClusterManager) -> dict[int, Health]:
    runtime = manager.get("backend")
    assert runtime is not None
    return {host.port: host.health for host in runtime.hosts}


async def _serve(handler: Any) -> tuple[asyncio.Server, int]:
    server = await start_server(handler)
    return server, port_of(server)


async def _pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        if await reader.readexactly(4) == b"PING":
            writer.write(b"xxPO")
            await writer.drain()
            writer.write(b"NGyy")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def test_tcp_check_with_payloads_marks_hosts_and_follows_a_dying_server() -> None:
    good, good_port = await _serve(_pong)
    silent, silent_port = await _serve(lambda r, w: w.close())
    async with good, silent:
        check = {"tcp_health_check": {"send": {"text": "50494e47"},
                                      "receive": [{"text": "504f"}, {"text": "4e47"}]}}
        async with _manager([good_port, silent_port], check) as manager:
            await asyncio.wait_for(manager.wait_initialized(), 10)
            await _until(lambda: _health(manager) == {good_port: Health.HEALTHY,
                                                      silent_port: Health.UNHEALTHY})
            runtime = manager.get("backend")
            assert runtime is not None
            assert runtime.stats.counter("cluster.backend.health_check.success").value >= 1
            assert runtime.stats.counter("cluster.backend.health_check.failure").value >= 1
            await stop_servers(good)
            await _until(lambda: _health(manager)[good_port] is Health.UNHEALTHY)
            assert runtime.choose_host() is not None  # panic: all unhealthy -> all hosts


async def test_tcp_connect_only_check_detects_refused_port() -> None:
    server, port = await _serve(lambda r, w: w.close())
    async with server:
        closed_port = free_port()  # bound and released: nothing listens there
        async with _manager([port, closed_port], {"tcp_health_check": {}}) as manager:
            await _until(lambda: _health(manager) == {port: Health.HEALTHY,
                                                      closed_port: Health.UNHEALTHY})


def _http_server(statuses: dict[str, int], seen: list[bytes]) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            path = head.split(b" ")[1].decode()
            status = statuses.get(path, 404)
            extra = "x-envoy-degraded: 1\r\n" if status == 299 else ""
            writer.write(f"HTTP/1.1 {status} X\r\n{extra}content-length: 0\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return handle


async def test_http_check_path_host_and_expected_statuses() -> None:
    seen: list[bytes] = []
    statuses = {"/healthz": 204}
    server, port = await _serve(_http_server(statuses, seen))
    async with server:
        check = {"http_health_check": {"path": "/healthz", "host": "svc.local",
                                       "expected_statuses": [{"start": 200, "end": 300}]}}
        async with _manager([port], check) as manager:
            await _until(lambda: _health(manager) == {port: Health.HEALTHY})
            assert b"GET /healthz HTTP/1.1" in seen[0]
            assert b"Host: svc.local" in seen[0]
            assert b"User-Agent: Envoy/HC" in seen[0]
            statuses["/healthz"] = 503  # an unexpected status fails at once
            await _until(lambda: _health(manager) == {port: Health.UNHEALTHY})
            statuses["/healthz"] = 200
            await _until(lambda: _health(manager) == {port: Health.HEALTHY})
            statuses["/healthz"] = 299  # the test server adds x-envoy-degraded for 299
            await _until(lambda: _health(manager) == {port: Health.DEGRADED})


async def test_grpc_health_check_follows_serving_status() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer() if hasattr(health, "aio") else None
    if servicer is None:
        pytest.skip("grpcio-health-checking has no aio servicer")
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        await servicer.set("svc", health_pb2.HealthCheckResponse.SERVING)
        check = {"grpc_health_check": {"service_name": "svc"}}
        async with _manager([port], check) as manager:
            await _until(lambda: _health(manager) == {port: Health.HEALTHY})
            await servicer.set("svc", health_pb2.HealthCheckResponse.NOT_SERVING)
            await _until(lambda: _health(manager) == {port: Health.UNHEALTHY})
            await servicer.set("svc", health_pb2.HealthCheckResponse.SERVING)
            await _until(lambda: _health(manager) == {port: Health.HEALTHY})
            await server.stop(None)
            await _until(lambda: _health(manager) == {port: Health.UNHEALTHY})
    finally:
        await server.stop(None)


async def test_endpoint_health_check_port_and_hostname_override_the_cluster_check() -> None:
    seen: list[bytes] = []
    server, port = await _serve(_http_server({"/healthz": 200}, seen))
    traffic_port = free_port()  # nothing listens: only the health-check port is served
    config = translate_cluster(cluster_proto(
        load_assignment={"cluster_name": "backend", "endpoints": [{"lb_endpoints": [{
            "endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": traffic_port}},
                "health_check_config": {"port_value": port, "hostname": "per-host.local"}}}]}]},
        health_checks=[{**FAST, "http_health_check": {"path": "/healthz", "host": "svc"}}]))
    manager = ClusterManager(Stats(), rng=random.Random(3))
    manager.update([config])
    async with server:
        await manager.start()
        try:
            await _until(lambda: _health(manager) == {traffic_port: Health.HEALTHY})
            assert b"Host: per-host.local" in seen[0]
        finally:
            await manager.close()


async def test_host_removed_from_eds_is_kept_until_its_checks_fail() -> None:
    def assignment(*ports: int) -> LoadAssignment:
        return LoadAssignment("backend", (LocalityEndpoints(
            Locality(), tuple(Endpoint("127.0.0.1", port) for port in ports)),))

    first, first_port = await _serve(lambda r, w: w.close())
    second, second_port = await _serve(lambda r, w: w.close())
    config = translate_cluster(cluster_proto(
        type="EDS", eds_cluster_config={},
        health_checks=[{**FAST, "unhealthy_threshold": 1, "tcp_health_check": {}}]))
    manager = ClusterManager(Stats(), rng=random.Random(3))
    manager.update([config], {"backend": assignment(first_port, second_port)})
    async with first, second:
        await manager.start()
        try:
            await _until(lambda: _health(manager) == {first_port: Health.HEALTHY,
                                                      second_port: Health.HEALTHY})
            manager.update_assignment(assignment(first_port))
            assert set(_health(manager)) == {first_port, second_port}  # still passing: kept
            await stop_servers(second)
            await _until(lambda: set(_health(manager)) == {first_port})
        finally:
            await manager.close()
