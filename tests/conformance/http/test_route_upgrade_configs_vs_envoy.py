"""Differential: a route's upgrade_configs override the HCM's for their upgrade type, both
ways (Envoy's createUpgradeFilterChain): `enabled: false` on a route refuses a WebSocket
upgrade the HCM allows (403), a route entry allows one the HCM does not configure (101).
Envoy vs `pointsman proxy`, HTTP/1.1, one bootstrap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.differential import envoy_and_pointsman
from tests.support.websockets import UpgradeEchoBackend

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
WEBSOCKET_OFF = [{"upgrade_type": "websocket", "enabled": False}]
WEBSOCKET_ON = [{"upgrade_type": "websocket"}]


def bootstrap(port: int, backend_port: int) -> dict[str, Any]:
    """/hcm/...: the HCM enables websocket; /none/...: it configures no upgrade."""
    def route(prefix: str, upgrades: list[dict[str, Any]] | None) -> dict[str, Any]:
        action: dict[str, Any] = {"cluster": "echo"}
        if upgrades is not None:
            action["upgrade_configs"] = upgrades
        return {"match": {"prefix": prefix}, "route": action}

    def listener(name: str, listen_port: int, hcm_upgrades: list[dict[str, Any]],
                 routes: list[dict[str, Any]]) -> dict[str, Any]:
        return {"name": name, "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": name, "http_filters": [ROUTER],
                                 "upgrade_configs": hcm_upgrades,
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": routes}]}}}]}]}

    routes = [route("/off", WEBSOCKET_OFF), route("/on", WEBSOCKET_ON), route("/", None)]
    return {"static_resources": {
        "listeners": [listener("hcm", port, WEBSOCKET_ON, routes)],
        "clusters": [{"name": "echo", "type": "STATIC", "connect_timeout": "1s",
                      "load_assignment": {"cluster_name": "echo", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": backend_port}}}}]}]}}]}}


def bootstrap_without_hcm_upgrades(port: int, backend_port: int) -> dict[str, Any]:
    config = bootstrap(port, backend_port)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    del hcm["typed_config"]["upgrade_configs"]
    return config


@pytest.fixture
async def backend() -> AsyncIterator[int]:
    echo = UpgradeEchoBackend()
    port = await echo.start()
    try:
        yield port
    finally:
        await echo.close()


async def _status_line(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nhost: a\r\nconnection: upgrade\r\n"
                     "upgrade: websocket\r\n\r\n".encode())
        async with asyncio.timeout(5):
            return await reader.readline()
    finally:
        writer.close()


@pytest.mark.parametrize("hcm_enables", [True, False])
async def test_route_upgrade_configs_override_the_hcm_like_envoy(backend: int,
                                                                hcm_enables: bool) -> None:
    make = bootstrap if hcm_enables else bootstrap_without_hcm_upgrades
    seen = []
    with envoy_and_pointsman(lambda port: make(port, backend), f"upg-{hcm_enables}") as ports:
        for port in ports:
            seen.append({path: (await _status_line(port, path)).split(b" ")[1]
                         for path in ("/off", "/on", "/other")})
    envoy, ours = seen
    assert envoy == {"/off": b"403", "/on": b"101", "/other": b"101" if hcm_enables else b"403"}
    assert ours == envoy
