"""Differential: envoy.filters.http.cors, Envoy 1.40 vs `pointsman proxy`.

One listener with the CORS filter; policies as typed_per_filter_config on the route
configuration, a virtual host and routes, and as the deprecated route-level `cors`. Each request
(simple, preflight, allowed and refused origins, shadow and disabled policies, a direct
response, private network access, `*` methods and headers) gets the same status and the same
Access-Control-* headers from both, reaches the backend or not alike, and the
`http.<stat_prefix>.cors.origin_valid` / `origin_invalid` counters agree.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.bootstraps import ROUTER, http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

CORS_FILTER = {"name": "cors", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"}}
POLICY = "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy"
ALL = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
NONE = {"default_value": {"numerator": 0, "denominator": "HUNDRED"}}


def _policy(**fields: Any) -> dict[str, Any]:
    return {"cors": {"@type": POLICY, **fields}}


def _route(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"match": {"prefix": prefix}, "route": {"cluster": "app"}, **extra}


VHOST_POLICY = _policy(
    allow_origin_string_match=[{"exact": "https://a.test"}, {"prefix": "https://sub."}],
    allow_methods="GET, PUT", allow_headers="x-a,x-b", expose_headers="x-exposed",
    max_age="600", allow_credentials=True)


def routes() -> list[dict[str, Any]]:
    return [
        _route("/open", typed_per_filter_config=_policy(
            allow_origin_string_match=[{"safe_regex": {"regex": ".*"}}], allow_methods="*",
            allow_headers="*", allow_private_network_access=True, allow_credentials=False)),
        _route("/disabled", typed_per_filter_config=_policy(filter_enabled=NONE)),
        _route("/shadow", typed_per_filter_config=_policy(filter_enabled=NONE,
                                                           shadow_enabled=ALL)),
        _route("/strict", typed_per_filter_config=_policy(forward_not_matching_preflights=False)),
        {"match": {"prefix": "/direct"}, "direct_response": {"status": 204}},
        _route("/"),
    ]


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    hcm: dict[str, Any] = config["static_resources"]["listeners"][0]["filter_chains"][0][
        "filters"][0]["typed_config"]
    return hcm


def _web(port: int) -> dict[str, Any]:
    """Per-route CorsPolicy configs on routes, a virtual host and the route configuration."""
    config = http_bootstrap(port, routes(), [], stat_prefix="web",
                            http_filters=[CORS_FILTER, ROUTER])
    route_config = _hcm(config)["route_config"]
    route_config["virtual_hosts"][0]["typed_per_filter_config"] = VHOST_POLICY
    route_config["virtual_hosts"][0]["domains"] = ["app.test"]
    route_config["typed_per_filter_config"] = _policy(
        allow_origin_string_match=[{"exact": "https://top.test"}], expose_headers="x-top")
    route_config["virtual_hosts"].append({"name": "other", "domains": ["*"],
                                          "routes": [_route("/")]})
    listener: dict[str, Any] = config["static_resources"]["listeners"][0]
    return listener


def _legacy(port: int) -> dict[str, Any]:
    """The deprecated `cors` of a virtual host and a route action, no per-route config."""
    config = http_bootstrap(port, [
        {"match": {"prefix": "/own"}, "route": {"cluster": "app", "cors": {
            "allow_origin_string_match": [{"exact": "https://own.test"}],
            "allow_headers": "x-own"}}},
        _route("/")], [], stat_prefix="legacy", http_filters=[CORS_FILTER, ROUTER])
    _hcm(config)["route_config"]["virtual_hosts"][0]["cors"] = {
        "allow_origin_string_match": [{"suffix": ".legacy.test"}],
        "allow_methods": "POST", "max_age": "5", "allow_credentials": True}
    listener: dict[str, Any] = config["static_resources"]["listeners"][0]
    return listener


def bootstrap(ports: dict[str, int], backend: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_web(ports["web"]), _legacy(ports["legacy"])],
        "clusters": [static_cluster("app", [backend])]}}


PREFLIGHT = (("access-control-request-method", "PUT"),
             ("access-control-request-headers", "x-a, x-c"))
Request = tuple[str, str, str, str, tuple[tuple[str, str], ...]]
A_TEST = (("origin", "https://a.test"),)
REQUESTS: list[Request] = [
    ("web", "GET", "/", "app.test", ()),  # no Origin
    ("web", "GET", "/", "app.test", A_TEST),
    ("web", "GET", "/", "app.test", (("origin", "https://sub.a.test"),)),
    ("web", "GET", "/", "app.test", (("origin", "https://evil.test"),)),
    ("web", "GET", "/", "app.test", (("origin", ""),)),
    ("web", "OPTIONS", "/", "app.test", (*A_TEST, *PREFLIGHT)),
    ("web", "OPTIONS", "/", "app.test", (("origin", "https://evil.test"), *PREFLIGHT)),
    ("web", "OPTIONS", "/", "app.test", A_TEST),  # no Access-Control-Request-Method
    ("web", "OPTIONS", "/strict", "app.test", (("origin", "https://evil.test"), *PREFLIGHT)),
    ("web", "OPTIONS", "/strict", "app.test", (*A_TEST, *PREFLIGHT)),
    ("web", "OPTIONS", "/open", "app.test", (("origin", "https://x.test"), *PREFLIGHT,
                                             ("access-control-request-private-network", "true"))),
    ("web", "OPTIONS", "/open", "app.test", (("origin", "https://x.test"),
                                             ("access-control-request-method", "DELETE"))),
    ("web", "GET", "/open", "app.test", (("origin", "https://x.test"),)),
    ("web", "GET", "/disabled", "app.test", A_TEST),
    ("web", "OPTIONS", "/disabled", "app.test", (*A_TEST, *PREFLIGHT)),
    ("web", "GET", "/shadow", "app.test", A_TEST),
    ("web", "OPTIONS", "/shadow", "app.test", (("origin", "https://evil.test"), *PREFLIGHT)),
    ("web", "OPTIONS", "/direct", "app.test", (*A_TEST, *PREFLIGHT)),
    ("web", "HEAD", "/", "app.test", A_TEST),
    ("web", "GET", "/", "other.test", (("origin", "https://top.test"),)),
    ("web", "OPTIONS", "/", "other.test", (("origin", "https://top.test"), *PREFLIGHT)),
    ("web", "OPTIONS", "/", "other.test", (*A_TEST, *PREFLIGHT)),
    ("legacy", "GET", "/", "l.test", (("origin", "https://x.legacy.test"),)),
    ("legacy", "OPTIONS", "/", "l.test", (("origin", "https://x.legacy.test"), *PREFLIGHT)),
    ("legacy", "OPTIONS", "/own", "l.test", (("origin", "https://own.test"), *PREFLIGHT)),
    ("legacy", "OPTIONS", "/own", "l.test", (("origin", "https://x.legacy.test"), *PREFLIGHT)),
]


def exchange(ports: dict[str, int], request: Request) -> tuple[Any, ...]:
    """(status, Access-Control-* headers, forwarded?, and for an answer of the proxy's own
    its content-length, content-type and body size)."""
    listener, method, path, host, headers = request
    connection = http.client.HTTPConnection("127.0.0.1", ports[listener], timeout=10)
    try:
        connection.request(method, path, headers={"Host": host, **dict(headers)})
        response = connection.getresponse()
        body = response.read()
        cors = sorted((name.lower(), value) for name, value in response.getheaders()
                      if name.lower().startswith("access-control-"))
        forwarded = response.getheader("x-backend") is not None
        local = () if forwarded else (response.getheader("content-length"),
                                      response.getheader("content-type"), len(body))
        return response.status, tuple(cors), forwarded, local
    finally:
        connection.close()


@pytest.fixture(scope="module")
def answers() -> Iterator[tuple[list[Any], list[Any], Envoy, Pointsman]]:
    with EchoBackend("app") as backend:
        envoy_ports = {"web": free_port(), "legacy": free_port()}
        ours_ports = {"web": free_port(), "legacy": free_port()}
        envoy = Envoy(bootstrap(envoy_ports, backend.port), name="envoy-cors")
        try:
            ours = Pointsman(bootstrap(ours_ports, backend.port), name="pointsman-cors")
            try:
                envoy.wait_ready()
                ours.wait_ready()
                yield ([exchange(envoy_ports, request) for request in REQUESTS],
                       [exchange(ours_ports, request) for request in REQUESTS], envoy, ours)
            finally:
                ours.stop()
        finally:
            envoy.stop()


@pytest.mark.parametrize("index", range(len(REQUESTS)),
                         ids=[f"{m} {h}{p} {dict(hs).get('origin', '-')}"
                              for _, m, p, h, hs in REQUESTS])
def test_cors_answer_like_envoy(index: int,
                                answers: tuple[list[Any], list[Any], Envoy, Pointsman]) -> None:
    expected, ours, _envoy, _ours = answers
    assert ours[index] == expected[index]


def test_preflight_is_answered_by_the_filter(
        answers: tuple[list[Any], list[Any], Envoy, Pointsman]) -> None:
    """The reference itself: a preflight of an allowed origin never reaches the backend."""
    expected, _ours, _envoy, _pointsman = answers
    status, headers, forwarded, _local = expected[REQUESTS.index(
        ("web", "OPTIONS", "/", "app.test", (*A_TEST, *PREFLIGHT)))]
    assert status == 200 and not forwarded
    assert ("access-control-allow-origin", "https://a.test") in headers


def test_origin_counters_like_envoy(
        answers: tuple[list[Any], list[Any], Envoy, Pointsman]) -> None:
    _expected, _ours, envoy, ours = answers
    names = [f"http.{prefix}.cors.origin_{kind}" for prefix in ("web", "legacy")
             for kind in ("valid", "invalid")]
    counts = [envoy.stat(name) for name in names]
    assert all(counts)
    assert [ours.stat(name) for name in names] == counts
