"""Differential: local_ratelimit's token bucket and x-ratelimit-* headers, Envoy 1.40 vs ours.

Measured on Envoy 1.40: the bucket refills continuously (no fill timer): with 4 tokens per 8 s,
2.3 s after emptying it lets one request through, not none and not four. x-ratelimit-remaining
is the whole tokens left when the response goes out, x-ratelimit-reset 0 while a token is
left, else the seconds to the next one rounded up. With local_rate_limit_per_downstream_connection
each connection has its own bucket; without a token_bucket nothing is limited and no
x-ratelimit-* header is sent.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.bootstraps import ROUTER, http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HUNDRED = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}
VARIANTS: dict[str, dict[str, Any]] = {
    # 0.5 token/s, pro rata; a timer-based fill would add 4 at once every 8 s
    "shared": {"token_bucket": {"max_tokens": 4, "tokens_per_fill": 4, "fill_interval": "8s"}},
    "per_conn": {"token_bucket": {"max_tokens": 1, "fill_interval": "60s"},
                 "local_rate_limit_per_downstream_connection": True},
    "no_bucket": {},
}
HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _listener(name: str, port: int, fields: dict[str, Any]) -> dict[str, Any]:
    limiter = {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3"
                 ".LocalRateLimit",
        "stat_prefix": name, "filter_enabled": HUNDRED, "filter_enforced": HUNDRED,
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03", **fields}}
    config = http_bootstrap(port, [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}}],
                            [], stat_prefix=name, http_filters=[limiter, ROUTER])
    listener: dict[str, Any] = config["static_resources"]["listeners"][0]
    return listener


def bootstrap(ports: dict[str, int], backend: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_listener(name, ports[name], fields) for name, fields in VARIANTS.items()],
        "clusters": [static_cluster("echo", [backend])]}}


@pytest.fixture(scope="module")
def proxies() -> Iterator[tuple[dict[str, int], dict[str, int], Envoy, Pointsman]]:
    with EchoBackend("echo") as backend:
        envoy_ports = {name: free_port() for name in VARIANTS}
        ours_ports = {name: free_port() for name in VARIANTS}
        envoy = Envoy(bootstrap(envoy_ports, backend.port), name="envoy-local-ratelimit")
        try:
            ours = Pointsman(bootstrap(ours_ports, backend.port), name="pointsman-local-ratelimit")
            try:
                envoy.wait_ready()
                ours.wait_ready()
                yield envoy_ports, ours_ports, envoy, ours
            finally:
                ours.stop()
        finally:
            envoy.stop()


def _get(connection: http.client.HTTPConnection) -> tuple[Any, ...]:
    connection.request("GET", "/", headers={"Host": "app.test"})
    response = connection.getresponse()
    response.read()
    return (response.status, *(response.getheader(name) for name in HEADERS))


def _fresh(port: int) -> tuple[Any, ...]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return _get(connection)
    finally:
        connection.close()


def _refill_sequence(port: int) -> list[tuple[Any, ...]]:
    """Empty the 4-token bucket, wait 2.3 s (1.15 tokens at 0.5/s), ask twice. Any delay
    up to 0.7 s more leaves the answers unchanged (between 1 and 1.5 tokens)."""
    answers = [_fresh(port) for _ in range(5)]
    time.sleep(2.3)
    return [*answers, _fresh(port), _fresh(port)]


def test_bucket_refills_pro_rata_like_envoy(
        proxies: tuple[dict[str, int], dict[str, int], Envoy, Pointsman]) -> None:
    envoy_ports, ours_ports, envoy, ours = proxies
    expected = _refill_sequence(envoy_ports["shared"])
    assert expected == [(200, "4", "3", "0"), (200, "4", "2", "0"), (200, "4", "1", "0"),
                        (200, "4", "0", "2"), (429, "4", "0", "2"),
                        (200, "4", "0", "2"), (429, "4", "0", "2")]
    assert _refill_sequence(ours_ports["shared"]) == expected
    names = [f"shared.http_local_rate_limit.{name}"
             for name in ("enabled", "ok", "rate_limited", "enforced")]
    assert [envoy.stat(name) for name in names] == [7, 5, 2, 2]
    assert [ours.stat(name) for name in names] == [7, 5, 2, 2]


def _per_connection_sequence(port: int) -> list[tuple[Any, ...]]:
    first = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    second = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        return [_get(connection) for connection in (first, first, second, second, first)]
    finally:
        first.close()
        second.close()


def test_per_connection_buckets_like_envoy(
        proxies: tuple[dict[str, int], dict[str, int], Envoy, Pointsman]) -> None:
    envoy_ports, ours_ports, _envoy, _ours = proxies
    expected = _per_connection_sequence(envoy_ports["per_conn"])
    assert [answer[0] for answer in expected] == [200, 429, 200, 429, 429]
    assert expected[1] == (429, "1", "0", "60")
    assert _per_connection_sequence(ours_ports["per_conn"]) == expected


def test_no_token_bucket_limits_nothing_like_envoy(
        proxies: tuple[dict[str, int], dict[str, int], Envoy, Pointsman]) -> None:
    envoy_ports, ours_ports, envoy, ours = proxies
    expected = [_fresh(envoy_ports["no_bucket"]) for _ in range(3)]
    assert expected == [(200, None, None, None)] * 3
    assert [_fresh(ours_ports["no_bucket"]) for _ in range(3)] == expected
    names = [f"no_bucket.http_local_rate_limit.{name}" for name in ("enabled", "ok")]
    assert [envoy.stat(name) for name in names] == [3, 3]
    assert [ours.stat(name) for name in names] == [3, 3]
