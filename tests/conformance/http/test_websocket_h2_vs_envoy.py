"""Differential: WebSocket over HTTP/2 (RFC 8441 extended CONNECT), Envoy vs `pointsman proxy`.

The same bootstrap for both: an HCM with codec_type HTTP2 and http2_protocol_options
allow_connect, in front of an HTTP/1.1 backend that answers `Upgrade: websocket` with 101 and
echoes (Envoy docs: arch_overview/http/upgrades, "Websocket over HTTP/2 hops"). Compared:
the status and headers of the answer, the echoed bytes, how the stream ends when the backend
closes (after outliving the route timeout) and when the client half-closes (the route
timeout starts then), the request line and upgrade headers the backend received, stats, and
the 403 (and GOAWAY) when no upgrade_configs enable websocket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.websockets import H2WebSocketClient, UpgradeEchoBackend

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
# The route timeout runs from the end of the request (the client's END_STREAM), so a tunnel
# outlives it until the client half-closes.
ROUTE_TIMEOUT = "1s"
# Per-process or per-request values, not behaviour.
VOLATILE = {"date", "x-envoy-upstream-service-time", "server"}


def _listener(name: str, port: int, upgrades: list[dict[str, Any]]) -> dict[str, Any]:
    hcm = {"@type": HCM, "stat_prefix": name, "codec_type": "HTTP2",
           "http2_protocol_options": {"allow_connect": True}, "http_filters": [ROUTER],
           "upgrade_configs": upgrades,
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": "backend",
                                                    "timeout": ROUTE_TIMEOUT}}]}]}}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm}]}]}


def _bootstrap(ports: tuple[int, int], backend_port: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_listener("ws", ports[0], [{"upgrade_type": "websocket"}]),
                      _listener("plain", ports[1], [])],
        "clusters": [{"name": "backend", "type": "STATIC", "connect_timeout": "2s",
                      "load_assignment": {"cluster_name": "backend", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": backend_port}}}}]}]}}]}}


async def _backend_closes(port: int) -> dict[str, Any]:
    async with H2WebSocketClient(port) as client:
        status = await client.open("/chat?room=1", "ws.test")
        echoed = []
        for message in (b"hello", b"\x81\x05frame", b"y" * 70_000, b"bye"):
            if message == b"bye":
                await asyncio.sleep(1.2)  # longer than the route timeout
            client.send(message)
            echoed.append(await client.receive(len(message)) == message)
        end = await client.ended()
        headers = sorted((n, v) for n, v in client.headers if n not in VOLATILE)
    return {"status": status, "headers": headers, "echoed": echoed,
            "end": (end.end_stream, end.reset_code)}


async def _client_half_closes(port: int) -> dict[str, Any]:
    async with H2WebSocketClient(port) as client:
        status = await client.open("/half", "ws.test")
        client.send(b"last", end_stream=True)
        echoed = await client.receive(4)
        end = await client.ended()
    return {"status": status, "echoed": echoed, "end": (end.end_stream, end.reset_code)}


async def _not_enabled(port: int) -> dict[str, Any]:
    async with H2WebSocketClient(port) as client:
        status = await client.open("/plain", "ws.test")
        end = await client.reset_after_end()
    return {"status": status, "end": (end.end_stream, end.reset_code), "goaway": end.goaway,
            "client_error": end.error}


async def _run(proxy: AdminProxy, ports: tuple[int, int],
               backend: UpgradeEchoBackend) -> dict[str, Any]:
    backend.heads.clear()
    async with asyncio.timeout(20):
        closes = await _backend_closes(ports[0])
        half = await _client_half_closes(ports[0])
        forbidden = await _not_enabled(ports[1])
    seen = [_upgrade_lines(head) for head in backend.heads]
    stats = {name: await asyncio.to_thread(proxy.stat, name) for name in (
        "cluster.backend.upstream_rq_101", "cluster.backend.upstream_rq_completed",
        "http.ws.downstream_rq_1xx",
        "http.ws.downstream_rq_2xx", "http.plain.downstream_rq_4xx")}
    return {"closes": closes, "half": half, "forbidden": forbidden, "seen": seen,
            "stats": stats}


def _upgrade_lines(head: bytes) -> list[bytes]:
    """The request line and the upgrade-related header lines, as the backend received them."""
    lines = head.split(b"\r\n")
    return [lines[0], *sorted(line for line in lines[1:] if line.startswith(
        (b"upgrade:", b"connection:", b"host:", b"sec-websocket-", b"content-length:",
         b"transfer-encoding:")))]


async def test_websocket_over_http2_like_envoy() -> None:
    backend = UpgradeEchoBackend()
    backend_port = await backend.start()
    envoy_ports = (free_port(), free_port())
    ours_ports = (free_port(), free_port())
    envoy = Envoy(_bootstrap(envoy_ports, backend_port), name="envoy-ws-h2")
    ours = Pointsman(_bootstrap(ours_ports, backend_port), name="pm-ws-h2")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _run(envoy, envoy_ports, backend)
        actual = await _run(ours, ours_ports, backend)
    finally:
        envoy.stop()
        ours.stop()
        await backend.close()
    print("envoy:", expected)
    print("ours: ", actual)
    assert expected["closes"]["status"] == 200
    assert expected["closes"]["echoed"] == [True] * 4
    # 403, GOAWAY NO_ERROR (2^31-1) first as Envoy starts closing, RST_STREAM NO_ERROR after
    assert expected["forbidden"] == {"status": 403, "end": (True, 0),
                                     "goaway": (0, 2**31 - 1), "client_error": ""}
    # the backend closing a tunnel: CONNECT_ERROR; the route timeout after the client's
    # END_STREAM: INTERNAL_ERROR
    assert (expected["closes"]["end"], expected["half"]["end"]) == ((False, 10), (False, 2))
    assert actual == expected
