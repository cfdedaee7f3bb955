"""Hash policies feeding RING_HASH (sticky cookie), and XFF / use_remote_address."""

from __future__ import annotations

import asyncio

from proxy.http.request_headers import local_interface_address
from tests.integration.proxy.http.clients import H1Client
from tests.integration.proxy.http.harness import Sidecar, hcm, simple_routes, static_cluster


async def test_cookie_pins_a_client_and_moves_when_its_host_dies(backends) -> None:  # type: ignore[no-untyped-def]
    servers = [backends(f"s{i}") for i in range(3)]
    cluster = static_cluster("sticky", [s.port for s in servers], lb_policy="RING_HASH",
                             health_checks=[{
                                 "timeout": "1s", "interval": "0.2s",
                                 "unhealthy_threshold": 1, "healthy_threshold": 1,
                                 "no_traffic_interval": "0.2s", "tcp_health_check": {}}])
    routes = simple_routes({"match": {"prefix": "/"}, "route": {
        "cluster": "sticky",
        "hash_policy": [{"cookie": {"name": "pin", "ttl": "3600s", "path": "/"}}]}})
    async with Sidecar(hcm(routes), [cluster]) as sidecar, H1Client(sidecar.port) as client:
        await sidecar.manager.start()
        await sidecar.manager.wait_initialized()
        first = await client.request("GET", "/")
        set_cookie = first.header("set-cookie") or ""
        assert set_cookie.startswith('pin="') and "Max-Age=3600" in set_cookie
        assert "Path=/" in set_cookie and "HttpOnly" in set_cookie
        cookie = set_cookie.split(";")[0]
        pinned = {(await client.request("GET", "/", headers=[("cookie", cookie)])).json()
                  ["backend"] for _ in range(10)}
        assert len(pinned) == 1
        # different cookies land on different hosts (the ring spreads keys)
        spread = {(await client.request("GET", "/", headers=[("cookie", f"pin=k{i}")])).json()
                  ["backend"] for i in range(30)}
        assert len(spread) >= 2
        # the pinned host goes away: health checks notice, the key moves, and stays moved
        victim = next(s for s in servers if s.name in pinned)
        victim.stop()
        for _ in range(100):
            runtime = sidecar.manager.get("sticky")
            assert runtime is not None
            if sum(1 for host in runtime.hosts if host.healthy) == 2:
                break
            await asyncio.sleep(0.05)
        moved = {(await client.request("GET", "/", headers=[("cookie", cookie)])).json()
                 ["backend"] for _ in range(5)}
        assert len(moved) == 1 and moved != pinned


async def test_xff_with_use_remote_address(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    config = hcm(routes, use_remote_address=True)
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        response = await client.request("GET", "/", headers=[
            ("x-forwarded-for", "203.0.113.7"), ("x-forwarded-proto", "https"),
            ("x-envoy-retry-on", "5xx"), ("x-request-id", "keep-me?")])
        # Envoy appends its own interface address in place of a loopback peer
        forwarded = response.upstream_header("x-forwarded-for") or ""
        assert forwarded == f"203.0.113.7,{local_interface_address()}"
        assert response.upstream_header("x-forwarded-proto") == "http"
        # an external request (XFF had an address before ours) loses x-envoy-* controls
        assert response.upstream_header("x-envoy-retry-on") is None
        assert response.upstream_header("x-envoy-external-address") == "127.0.0.1"
        assert response.upstream_header("x-request-id") != "keep-me?"


async def test_xff_trusted_hops_without_remote_address(backends) -> None:  # type: ignore[no-untyped-def]
    backend = backends("a")
    routes = simple_routes({"match": {"prefix": "/"}, "route": {"cluster": "a"}})
    config = hcm(routes, xff_num_trusted_hops=1)
    async with Sidecar(config, [static_cluster("a", [backend.port])]) as sidecar, \
            H1Client(sidecar.port) as client:
        response = await client.request("GET", "/", headers=[
            ("x-forwarded-for", "198.51.100.1, 10.0.0.2"), ("x-request-id", "given")])
        assert response.upstream_header("x-forwarded-for") == "198.51.100.1, 10.0.0.2"
        assert response.upstream_header("x-forwarded-proto") == "http"
        assert response.upstream_header("x-request-id") == "given"
