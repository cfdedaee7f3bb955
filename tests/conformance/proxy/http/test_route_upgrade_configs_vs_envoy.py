"""Differential: a route's upgrade_configs override the HCM's for their upgrade type, both
ways (Envoy's createUpgradeFilterChain): `enabled: false` on a route refuses a WebSocket
upgrade the HCM allows (403), a route entry allows one the HCM does not configure (101).
Envoy vs `pointsman proxy`, HTTP/1.1, one bootstrap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.websockets import UpgradeEchoBackend

pytestmark = pytest.mark.conformance

WEBSOCKET_OFF = [{"upgrade_type": "websocket", "enabled": False}]
WEBSOCKET_ON = [{"upgrade_type": "websocket"}]


def bootstrap(port: int, backend_port: int, *, hcm_enables: bool) -> dict[str, Any]:
    """Routes /off (websocket disabled), /on (enabled), / (not named: the HCM decides); the
    HCM enables websocket or configures no upgrade."""
    def route(prefix: str, upgrades: list[dict[str, Any]] | None) -> dict[str, Any]:
        action: dict[str, Any] = {"cluster": "echo"}
        if upgrades is not None:
            action["upgrade_configs"] = upgrades
        return {"match": {"prefix": prefix}, "route": action}

    routes = [route("/off", WEBSOCKET_OFF), route("/on", WEBSOCKET_ON), route("/", None)]
    options = {"upgrade_configs": WEBSOCKET_ON} if hcm_enables else {}
    return http_bootstrap(port, routes, [static_cluster("echo", [backend_port])],
                          stat_prefix="upgrades", **options)


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
    seen = []
    with envoy_and_pointsman(lambda port: bootstrap(port, backend, hcm_enables=hcm_enables),
                             f"upg-{hcm_enables}") as ports:
        for port in ports:
            seen.append({path: (await _status_line(port, path)).split(b" ")[1]
                         for path in ("/off", "/on", "/other")})
    envoy, ours = seen
    assert envoy == {"/off": b"403", "/on": b"101", "/other": b"101" if hcm_enables else b"403"}
    assert ours == envoy
