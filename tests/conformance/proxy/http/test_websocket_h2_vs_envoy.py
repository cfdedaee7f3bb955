"""Differential: WebSocket over HTTP/2 (RFC 8441 extended CONNECT), Envoy vs `pointsman proxy`.

The same bootstrap for both: an HCM with codec_type HTTP2 and http2_protocol_options
allow_connect, in front of an HTTP/1.1 backend that answers `Upgrade: websocket` with 101 and
echoes (Envoy docs: arch_overview/http/upgrades, "Websocket over HTTP/2 hops"). Compared:
the status and headers of the answer, the echoed bytes, how the stream ends when the backend
closes (after outliving the route timeout) and when the client half-closes (the route
timeout starts then), the request line and upgrade headers the backend received, stats, and
the 403 (and GOAWAY) when no upgrade_configs enable websocket; and, to an HTTP/2 cluster, the
extended CONNECT the upstream receives (from HTTP/2 and from HTTP/1.1 clients) and the answer
the client gets (200 on HTTP/2, 101 on HTTP/1.1).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.websockets import (
    H2ConnectEchoBackend,
    H2WebSocketClient,
    UpgradeEchoBackend,
)

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
# The route timeout runs from the end of the request (the client's END_STREAM), so a tunnel
# outlives it until the client half-closes.
ROUTE_TIMEOUT = "1s"
H2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}
# Per-process or per-request values, not behaviour.
VOLATILE = {"date", "x-envoy-upstream-service-time", "server"}


def _listener(name: str, port: int, upgrades: list[dict[str, Any]], *,
              cluster: str = "backend", codec: str = "HTTP2") -> dict[str, Any]:
    hcm = {"@type": HCM, "stat_prefix": name, "codec_type": codec,
           "http2_protocol_options": {"allow_connect": True}, "http_filters": [ROUTER],
           "upgrade_configs": upgrades,
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
               {"match": {"prefix": "/"}, "route": {"cluster": cluster,
                                                    "timeout": ROUTE_TIMEOUT}}]}]}}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm}]}]}


def _cluster(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": {"cluster_name": name, "endpoints": [{
                "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}, **extra}


def _bootstrap(ports: dict[str, int], backend_ports: tuple[int, int]) -> dict[str, Any]:
    websocket = [{"upgrade_type": "websocket"}]
    return {"static_resources": {
        "listeners": [_listener("ws", ports["ws"], websocket),
                      _listener("plain", ports["plain"], []),
                      _listener("h2up", ports["h2up"], websocket, cluster="h2backend"),
                      _listener("h1to2", ports["h1to2"], websocket, cluster="h2backend",
                                codec="HTTP1"),
                      _listener("h1", ports["h1"], websocket, codec="HTTP1")],
        "clusters": [_cluster("backend", backend_ports[0]),
                     _cluster("h2backend", backend_ports[1],
                              typed_extension_protocol_options=H2_OPTIONS)]}}


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


async def _h2_upstream(port: int) -> dict[str, Any]:
    async with H2WebSocketClient(port) as client:
        status = await client.open("/up?x=1", "ws.test")
        client.send(b"hello")
        echoed = await client.receive(5)
        client.send(b"bye")
        echoed += await client.receive(3)
        end = await client.reset_after_end()
        headers = sorted((n, v) for n, v in client.headers if n not in VOLATILE)
    return {"status": status, "headers": headers, "echoed": echoed,
            "end": (end.end_stream, end.reset_code)}


async def _http1_to_h2_upstream(port: int) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /h1 HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(b"ping")
        echoed = await reader.readexactly(4)
    finally:
        writer.close()
    lines = head.lower().split(b"\r\n")
    return {"status_line": lines[0], "echoed": echoed, "headers": sorted(
        line for line in lines[1:] if line.startswith((b"upgrade:", b"connection:",
                                                       b"content-length:",
                                                       b"transfer-encoding:")))}


async def _http1_tunnel(port: int, *, half_close: bool) -> dict[str, Any]:
    """HTTP/1.1 on both hops: the backend closing after b"bye", or the client half-closing
    (EOF) while the backend keeps its side open: what the client gets. Envoy does not
    half-close a tunnel: the client's FIN closes it at once, before any echo comes back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    loop = asyncio.get_running_loop()
    try:
        writer.write(b"GET /h1 HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        if not half_close:
            await asyncio.sleep(1.2)  # longer than the route timeout: the tunnel stays
        writer.write(b"last" if half_close else b"bye")
        if half_close:
            writer.write_eof()
        started = loop.time()
        rest = await reader.read()  # to the end of the connection
        waited = loop.time() - started
    finally:
        writer.close()
    # After the backend's close Envoy waits out delayed_close_timeout (1 s) before closing,
    # we close at once: only the client's half-close is timed.
    return {"status_line": head.split(b"\r\n")[0].lower(), "rest": rest,
            "closed_at_once": waited < 0.8 if half_close else None}


async def _run(proxy: AdminProxy, ports: dict[str, int], backend: UpgradeEchoBackend,
               h2_backend: H2ConnectEchoBackend) -> dict[str, Any]:
    backend.heads.clear()
    h2_backend.requests.clear()
    async with asyncio.timeout(20):
        closes = await _backend_closes(ports["ws"])
        half = await _client_half_closes(ports["ws"])
        forbidden = await _not_enabled(ports["plain"])
        h2_upstream = await _h2_upstream(ports["h2up"])
        h1_to_h2 = await _http1_to_h2_upstream(ports["h1to2"])
        h1_closes = await _http1_tunnel(ports["h1"], half_close=False)
        h1_half = await _http1_tunnel(ports["h1"], half_close=True)
    seen = [_upgrade_lines(head) for head in backend.heads
            if not head.startswith(b"get /h1 ")]
    seen_h2 = [sorted((n, v) for n, v in request if n.startswith(":") or n in (
        "upgrade", "connection", "content-length", "sec-websocket-version"))
        for request in h2_backend.requests]
    stats = {name: await asyncio.to_thread(proxy.stat, name) for name in (
        "cluster.backend.upstream_rq_101", "cluster.backend.upstream_rq_completed",
        "http.ws.downstream_rq_1xx",
        "http.ws.downstream_rq_2xx", "http.plain.downstream_rq_4xx")}
    return {"closes": closes, "half": half, "forbidden": forbidden, "seen": seen,
            "stats": stats, "h2_upstream": h2_upstream, "h1_to_h2": h1_to_h2,
            "h1_closes": h1_closes, "h1_half": h1_half,
            "seen_h2": seen_h2}


def _upgrade_lines(head: bytes) -> list[bytes]:
    """The request line and the upgrade-related header lines, as the backend received them."""
    lines = head.split(b"\r\n")
    return [lines[0], *sorted(line for line in lines[1:] if line.startswith(
        (b"upgrade:", b"connection:", b"host:", b"sec-websocket-", b"content-length:",
         b"transfer-encoding:")))]


async def test_websocket_over_http2_like_envoy() -> None:
    backend, h2_backend = UpgradeEchoBackend(), H2ConnectEchoBackend()
    backend_ports = (await backend.start(), await h2_backend.start())
    names = ("ws", "plain", "h2up", "h1to2", "h1")
    envoy_ports = {name: free_port() for name in names}
    ours_ports = {name: free_port() for name in names}
    envoy = Envoy(_bootstrap(envoy_ports, backend_ports), name="envoy-ws-h2")
    ours = Pointsman(_bootstrap(ours_ports, backend_ports), name="pm-ws-h2")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _run(envoy, envoy_ports, backend, h2_backend)
        actual = await _run(ours, ours_ports, backend, h2_backend)
    finally:
        envoy.stop()
        ours.stop()
        await backend.close()
        await h2_backend.close()
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
    # to an HTTP/2 upstream the upgrade travels as extended CONNECT, its 200 is a 101 again
    assert (expected["h2_upstream"]["status"], expected["h2_upstream"]["echoed"]) == \
        (200, b"hellobye")
    assert expected["h1_to_h2"]["status_line"].startswith(b"http/1.1 101 ")
    assert all((":method", "CONNECT") in seen and (":protocol", "websocket") in seen
               for seen in expected["seen_h2"]) and len(expected["seen_h2"]) == 2
    assert expected["h1_closes"]["rest"] == b"bye"
    assert (expected["h1_half"]["rest"], expected["h1_half"]["closed_at_once"]) == (b"", True)
    assert actual == expected
