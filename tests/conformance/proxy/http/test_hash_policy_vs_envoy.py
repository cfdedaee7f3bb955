"""Differential: route hash policies feeding RING_HASH and MAGLEV pick the same backend in
Envoy and in `pointsman proxy` (header, cookie, query parameter, combined policies)."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conformance.proxy.http.test_h2load_balancing import HCM
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def bootstrap(port: int, backends: list[int]) -> dict[str, Any]:
    def cluster(name: str, policy: str) -> dict[str, Any]:
        return {"name": name, "type": "STATIC", "connect_timeout": "1s", "lb_policy": policy,
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": p}}}} for p in backends]}]}}

    def route(prefix: str, cluster_name: str, policies: list[dict[str, Any]]) -> dict[str, Any]:
        return {"match": {"prefix": prefix},
                "route": {"cluster": cluster_name, "hash_policy": policies}}

    routes = [
        route("/header", "ring", [{"header": {"header_name": "x-user"}}]),
        route("/cookie", "ring", [{"cookie": {"name": "session"}}]),
        route("/query", "maglev", [{"query_parameter": {"name": "u"}}]),
        route("/combined", "ring", [{"header": {"header_name": "x-user"}},
                                    {"query_parameter": {"name": "u"}}]),
        route("/terminal", "maglev", [{"header": {"header_name": "x-user"}, "terminal": True},
                                      {"query_parameter": {"name": "u"}}]),
        route("/sticky", "ring", [{"cookie": {"name": "pin", "ttl": "60s", "path": "/app"}}]),
        route("/session", "ring", [{"cookie": {"name": "pin", "ttl": "0s"}}]),
    ]
    return {"static_resources": {
        "listeners": [{"name": "l7", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": "l7", "http_filters": [ROUTER],
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": routes}]}}}]}]}],
        "clusters": [cluster("ring", "RING_HASH"), cluster("maglev", "MAGLEV")]}}


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    backends = [EchoBackend(f"b{i}").start() for i in range(4)]
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(bootstrap(envoy_port, [b.port for b in backends]), name="envoy-hash")
    ours = Pointsman(bootstrap(ours_port, [b.port for b in backends]), name="pointsman-hash")
    try:
        envoy.wait_ready()
        ours.wait_ready()
        yield envoy_port, ours_port
    finally:
        envoy.stop()
        ours.stop()
        for backend in backends:
            backend.stop()


def _backend(port: int, path: str, headers: dict[str, str]) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.getheader("x-backend") or f"status {response.status}"
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["header", "cookie", "query", "combined", "terminal"])
def test_same_backend_as_envoy(ports: tuple[int, int], kind: str) -> None:
    picks: list[tuple[str, str]] = []
    for index in range(24):
        key = f"user-{index}"
        headers = {"x-user": key, "cookie": f"session={key}"}
        path = f"/{kind}?u=q{index}"
        picks.append((_backend(ports[0], path, headers), _backend(ports[1], path, headers)))
    envoy_picks = [envoy for envoy, _ in picks]
    assert len(set(envoy_picks)) > 1  # the keys really spread
    assert [ours for _, ours in picks] == envoy_picks


def _set_cookie(port: int, path: str) -> tuple[str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        cookie = response.getheader("set-cookie") or ""
        backend = response.getheader("x-backend") or ""
    finally:
        connection.close()
    # with the cookie it set, the client lands on the same backend again
    value = cookie.split(";")[0]
    assert _backend(port, path, {"cookie": value}) == backend
    return cookie, value


@pytest.mark.parametrize("path", ["/sticky", "/session"])
def test_generated_cookie_like_envoy(ports: tuple[int, int], path: str) -> None:
    import re

    envoy_cookie, _ = _set_cookie(ports[0], path)
    ours_cookie, _ = _set_cookie(ports[1], path)
    # the value hashes the client's address:port, so only the shape is compared
    shape = re.compile(r'pin="[0-9a-f]{16}"')
    assert shape.match(envoy_cookie), envoy_cookie
    assert shape.sub("pin=V", ours_cookie) == shape.sub("pin=V", envoy_cookie)
