"""Differential: the timeout a gRPC request gets under max_grpc_timeout, and what the upstream
is told of it (a rewritten grpc-timeout, x-envoy-expected-rq-timeout-ms), Envoy vs
`pointsman proxy` with one bootstrap (RouteAction max_grpc_timeout, grpc_timeout_offset;
Envoy 1.40's FilterUtility::finalTimeout). The h2c echo backend reports the headers it got."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H2Client
from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.http_backends import EchoBackend

pytestmark = pytest.mark.conformance

ROUTES = {
    "offset": {"max_grpc_timeout": "0s", "grpc_timeout_offset": "1s"},
    "max": {"max_grpc_timeout": "3s"},
    "per_try": {"max_grpc_timeout": "0s", "retry_policy": {
        "retry_on": "5xx", "num_retries": 1, "per_try_timeout": "0.5s"}},
    "plain": {"timeout": "4s"},
    "unbounded": {"max_grpc_timeout": "0s"},
}
GRPC = [("content-type", "application/grpc"), ("te", "trailers")]
CASES = [  # (route, the client's grpc-timeout or None, gRPC or not)
    ("offset", "2S", True), ("offset", None, True), ("offset", "1500m", True),
    ("offset", "900m", True),  # the offset is not applied when it is not smaller
    ("max", "5S", True), ("max", "2S", True), ("max", None, True), ("max", "5S", False),
    ("per_try", "2S", True), ("per_try", None, True), ("plain", "2S", True),
    ("unbounded", "99999999S", True), ("unbounded", "0m", True),
]


def bootstrap(port: int, backend_port: int) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/{name}/"}, "route": {"cluster": "echo", **action}}
              for name, action in ROUTES.items()]
    echo = static_cluster("echo", [backend_port], typed_extension_protocol_options=H2_OPTIONS)
    return http_bootstrap(port, routes, [echo], stat_prefix="h2", codec_type="HTTP2")


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    with EchoBackend("echo", http2=True) as backend, envoy_and_pointsman(
            lambda port: bootstrap(port, backend.port), "grpc-timeout") as ports:
        yield ports


@pytest.mark.parametrize("route,grpc_timeout,grpc", CASES)
async def test_upstream_sees_the_timeout_envoy_gives_it(
        ports: tuple[int, int], route: str, grpc_timeout: str | None, grpc: bool) -> None:
    headers = GRPC if grpc else [("content-type", "application/json")]
    if grpc_timeout is not None:
        headers = [*headers, ("grpc-timeout", grpc_timeout)]
    seen = []
    for port in ports:
        async with H2Client(port) as client:
            response = await client.request("POST", f"/{route}/call", headers=headers,
                                            body=b"\0\0\0\0\0")
        assert response.status == 200
        upstream = json.loads(response.body)["headers"]
        seen.append([(name, value) for name, value in upstream
                     if name in ("grpc-timeout", "x-envoy-expected-rq-timeout-ms")])
    envoy, ours = seen
    assert ours == envoy
