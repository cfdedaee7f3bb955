"""Differential: HTTP/1.1 trailers (Http1ProtocolOptions.enable_trailers), Envoy vs ours.

An HTTP/1.1 client sends a chunked POST with a trailer (and `TE: trailers`) to two listeners,
one with `http_protocol_options.enable_trailers` and one without, each routing to three
clusters: an h2c backend (gRPC-style: answers with trailers), and two HTTP/1.1 backends whose
cluster options enable trailers or not (they answer chunked with a trailer). For every pair we
compare the status, body, the response trailers the client got, and the request trailers the
backend got.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
import pytest

from tests.integration.proxy.http.trailer_backends import TrailerBackends
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
CLUSTERS = ("h2", "h1on", "h1off")


def _options(config: dict[str, Any]) -> dict[str, Any]:
    return {OPTIONS: {"@type": f"type.googleapis.com/{OPTIONS}", "explicit_http_config": config}}


def _listener(name: str, port: int, trailers: bool) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/{cluster}/"}, "route": {"cluster": cluster}}
              for cluster in CLUSTERS]
    config: dict[str, Any] = {"@type": HCM, "stat_prefix": name, "http_filters": [ROUTER],
                              "route_config": {"virtual_hosts": [{
                                  "name": "all", "domains": ["*"], "routes": routes}]}}
    if trailers:
        config["http_protocol_options"] = {"enable_trailers": True}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": config}]}]}


def _cluster(name: str, port: int, options: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "typed_extension_protocol_options": _options(options),
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}}


def _bootstrap(ports: tuple[int, int], h2_port: int, h1_port: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_listener("on", ports[0], True), _listener("off", ports[1], False)],
        "clusters": [
            _cluster("h2", h2_port, {"http2_protocol_options": {}}),
            _cluster("h1on", h1_port, {"http_protocol_options": {"enable_trailers": True}}),
            _cluster("h1off", h1_port, {"http_protocol_options": {}}),
        ]}}


async def _exchange(port: int, path: str) -> dict[str, Any]:
    """POST chunked with a request trailer; the response's status, body, framing, trailers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    connection = h11.Connection(h11.CLIENT)
    try:
        writer.write(connection.send(h11.Request(method="POST", target=path, headers=[
            ("host", "trailers.test"), ("te", "trailers"),
            ("transfer-encoding", "chunked")])))
        writer.write(connection.send(h11.Data(data=b"abc")))
        writer.write(connection.send(h11.EndOfMessage(headers=[("x-client-trailer", "c")])))
        await writer.drain()
        result: dict[str, Any] = {"body": b""}
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                headers = {n.decode(): v.decode() for n, v in event.headers}
                result["status"] = event.status_code
                result["chunked"] = headers.get("transfer-encoding") == "chunked"
            elif isinstance(event, h11.Data):
                result["body"] += event.data
            elif isinstance(event, h11.EndOfMessage):
                result["trailers"] = sorted((n.decode(), v.decode()) for n, v in event.headers)
                return result
            elif isinstance(event, h11.ConnectionClosed):
                raise AssertionError(f"{path}: connection closed early")
    finally:
        writer.close()


async def _run(ports: tuple[int, int], backends: TrailerBackends, tag: str
               ) -> dict[str, Any]:
    results = {}
    async with asyncio.timeout(30):
        for listener, port in zip(("on", "off"), ports, strict=True):
            for cluster in CLUSTERS:
                path = f"/{cluster}/{tag}/{listener}"
                response = await _exchange(port, path)
                response["backend_got"] = backends.request_trailers.get(path)
                results[f"{listener}->{cluster}"] = response
    # The backends answer with the path in a trailer: compare without our tag.
    for response in results.values():
        response["trailers"] = [(n, v.replace(f"/{tag}/", "/")) for n, v in
                                response["trailers"]]
    return results


async def test_http1_trailers_follow_enable_trailers_like_envoy() -> None:
    backends = TrailerBackends()
    h2_port, h1_port = await backends.start()
    envoy_ports, ours_ports = (free_port(), free_port()), (free_port(), free_port())
    envoy = Envoy(_bootstrap(envoy_ports, h2_port, h1_port), name="envoy-trailers")
    ours = Pointsman(_bootstrap(ours_ports, h2_port, h1_port), name="pm-trailers")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _run(envoy_ports, backends, "envoy")
        actual = await _run(ours_ports, backends, "ours")
    finally:
        envoy.stop()
        ours.stop()
        await backends.close()
    # What Envoy does, spelled out: trailers pass only where both HTTP/1.1 hops enable them.
    on_h2 = expected["on->h2"]
    assert on_h2["trailers"] == [("grpc-status", "0"), ("x-backend-trailer", "/h2/on")]
    assert on_h2["backend_got"] == [("x-client-trailer", "c")]
    assert expected["off->h2"]["trailers"] == [] and expected["off->h2"]["backend_got"] == []
    assert expected["on->h1on"]["backend_got"] == [("x-client-trailer", "c")]
    assert expected["on->h1off"]["backend_got"] == []
    for case, response in expected.items():
        assert (case, actual[case]) == (case, response)
