"""Differential: which bodyless requests reach the upstream with an explicit
`content-length: 0`, per method and upstream protocol, Envoy vs `pointsman proxy`. The
downstream request carries neither content-length nor a body."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H1Client
from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.http_backends import EchoBackend

pytestmark = pytest.mark.conformance

METHODS = ("GET", "HEAD", "DELETE", "TRACE", "OPTIONS", "POST", "PUT", "PATCH", "PROPFIND")


def bootstrap(port: int, h1_port: int, h2_port: int) -> dict[str, Any]:
    routes = [{"match": {"prefix": "/h2"}, "route": {"cluster": "h2"}},
              {"match": {"prefix": "/"}, "route": {"cluster": "h1"}}]
    clusters = [static_cluster("h1", [h1_port]),
                static_cluster("h2", [h2_port], typed_extension_protocol_options=H2_OPTIONS)]
    return http_bootstrap(port, routes, clusters, stat_prefix="empty")


@pytest.fixture(scope="module")
def seen() -> Iterator[dict[tuple[str, str, str], str | None]]:
    """(proxy, upstream protocol, method) -> the content-length the upstream saw."""
    found: dict[tuple[str, str, str], str | None] = {}
    with EchoBackend("h1") as h1, EchoBackend("h2", http2=True) as h2:
        backends = {"h1": h1, "h2": h2}
        with envoy_and_pointsman(lambda port: bootstrap(port, h1.port, h2.port),
                                 "empty-body") as ports:
            async def send_all() -> None:
                for proxy, port in zip(("envoy", "pointsman"), ports, strict=True):
                    for protocol, backend in backends.items():
                        for method in METHODS:
                            async with H1Client(port) as client:
                                response = await client.request(method, f"/{protocol}/x")
                            assert response.status == 200, (proxy, protocol, method)
                            headers = dict(backend.seen[-1]["headers"])
                            found[(proxy, protocol, method)] = headers.get("content-length")

            asyncio.run(send_all())
    yield found


@pytest.mark.parametrize("protocol", ["h1", "h2"])
@pytest.mark.parametrize("method", METHODS)
def test_empty_body_stated_like_envoy(seen: dict[tuple[str, str, str], str | None],
                                      protocol: str, method: str) -> None:
    assert seen[("pointsman", protocol, method)] == seen[("envoy", protocol, method)]
