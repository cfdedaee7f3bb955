"""Differential: local_ratelimit, rbac, health_check and retries, Envoy vs `pointsman proxy`."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
HUNDRED = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def filters() -> list[dict[str, Any]]:
    return [
        {"name": "envoy.filters.http.health_check", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.health_check.v3"
                     ".HealthCheck",
            "pass_through_mode": False,
            "headers": [{"name": ":path", "string_match": {"exact": "/healthz"}}]}},
        {"name": "envoy.filters.http.rbac", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
            "rules_stat_prefix": "edge_",
            "rules": {"action": "DENY", "policies": {
                "admin-from-elsewhere": {
                    "permissions": [{"header": {"name": ":authority",
                                                "string_match": {"exact": "admin.test"}}}],
                    "principals": [{"not_id": {"direct_remote_ip": {
                        "address_prefix": "10.10.1.0", "prefix_len": 24}}}]},
                "no-secrets": {
                    "permissions": [{"url_path": {"path": {"prefix": "/secret"}}}],
                    "principals": [{"any": True}]}}}}},
        {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3"
                     ".LocalRateLimit",
            "stat_prefix": "rl",
            "token_bucket": {"max_tokens": 3, "tokens_per_fill": 3, "fill_interval": "3600s"},
            "filter_enabled": HUNDRED, "filter_enforced": HUNDRED,
            "response_headers_to_add": [{"header": {"key": "x-limited", "value": "yes"}}]}},
        ROUTER,
    ]


def bootstrap(port: int, good: int, bad: int) -> dict[str, Any]:
    def cluster(name: str, ports: list[int]) -> dict[str, Any]:
        return {"name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": p}}}} for p in ports]}]}}

    retry = {"retry_on": "5xx", "num_retries": 2,
             "retry_back_off": {"base_interval": "0.01s"}}
    routes = [
        {"match": {"prefix": "/retry-ok"}, "route": {"cluster": "good", "retry_policy": retry}},
        {"match": {"prefix": "/retry-bad"}, "route": {"cluster": "bad", "retry_policy": retry}},
        {"match": {"prefix": "/"}, "route": {"cluster": "good"}},
    ]
    return {"static_resources": {
        "listeners": [{"name": "l7", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": "l7", "http_filters": filters(),
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": routes}]}}}]}]}],
        "clusters": [cluster("good", [good]), cluster("bad", [bad])]}}


@pytest.fixture(scope="module")
def proxies() -> Iterator[tuple[int, int, EchoBackend, Envoy, Pointsman]]:
    good = EchoBackend("good").start()
    bad = EchoBackend("bad", fail_status=503).start()
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(bootstrap(envoy_port, good.port, bad.port), name="envoy-filters")
    ours = Pointsman(bootstrap(ours_port, good.port, bad.port), name="pointsman-filters")
    try:
        envoy.wait_ready()
        ours.wait_ready()
        yield envoy_port, ours_port, bad, envoy, ours
    finally:
        envoy.stop()
        ours.stop()
        good.stop()
        bad.stop()


def _get(port: int, path: str, host: str = "app.test") -> tuple[Any, ...]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        body = response.read()
        if response.getheader("x-backend"):
            body = response.getheader("x-backend", "").encode()
        return (response.status, body, response.getheader("x-limited"),
                response.getheader("content-type"))
    finally:
        connection.close()


def test_filter_chain_answers_like_envoy(
        proxies: tuple[int, int, EchoBackend, Envoy, Pointsman]) -> None:
    envoy_port, ours_port, bad, envoy, ours = proxies
    sequence = [("/healthz", "app.test"), ("/", "admin.test"), ("/secret/x", "app.test"),
                ("/retry-ok", "app.test"), ("/retry-bad", "app.test"), ("/", "app.test"),
                ("/", "app.test")]
    expected = [_get(envoy_port, path, host) for path, host in sequence]
    bad_calls_envoy = bad.total
    actual = [_get(ours_port, path, host) for path, host in sequence]
    assert [e[0] for e in expected] == [200, 403, 403, 200, 503, 200, 429]
    assert actual == expected
    # 5xx retried twice: three attempts on the failing cluster for both proxies
    assert bad.total - bad_calls_envoy == bad_calls_envoy == 3
    # RBAC stats: http.<HCM stat_prefix>.rbac.<rules_stat_prefix>.{allowed,denied}; the
    # health check answers before RBAC, the rate limit after it.
    names = [f"http.l7.rbac.edge_.{outcome}" for outcome in ("allowed", "denied")]
    assert [envoy.stat(name) for name in names] == [4, 2]
    assert [ours.stat(name) for name in names] == [4, 2]
