"""Differential: absolute-form request targets (RFC 9112 3.2.2) with the HCM's
http_protocol_options.allow_absolute_url unset (Envoy: true) and false, Envoy vs
`pointsman proxy`. With it, host and path come from the target; without it, the target stays
the :path, and Envoy's HCM answers any path not starting with `/` with 404 (absolute_path)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H1Client
from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.differential import envoy_and_pointsman
from tests.support.http_backends import EchoBackend

pytestmark = pytest.mark.conformance



def bootstrap(port: int, backend_port: int, allow: bool | None) -> dict[str, Any]:
    routes = [{"match": {"prefix": "/"}, "route": {"cluster": "echo"}},
              {"match": {"safe_regex": {"regex": "http://.*"}}, "route": {"cluster": "echo"}}]
    options = {} if allow is None else {"http_protocol_options": {"allow_absolute_url": allow}}
    return http_bootstrap(port, routes, [static_cluster("echo", [backend_port])],
                          stat_prefix="abs", **options)


@pytest.fixture(scope="module")
def backend() -> Iterator[EchoBackend]:
    with EchoBackend("echo") as echo:
        yield echo


@pytest.mark.parametrize("allow", [None, False, True])
async def test_absolute_form_target_like_envoy(backend: EchoBackend, allow: bool | None) -> None:
    seen = []
    with envoy_and_pointsman(lambda port: bootstrap(port, backend.port, allow),
                             f"abs-{allow}") as ports:
        for port in ports:
            async with H1Client(port) as client:
                response = await client.request("GET", "http://target.test/x?q=1",
                                                host="header.test")
            echoed = json.loads(response.body) if response.status == 200 else {}
            seen.append((response.status, echoed.get("path"), echoed.get("authority")))
    envoy, ours = seen
    assert envoy == ((404, None, None) if allow is False else (200, "/x?q=1", "target.test"))
    assert ours == envoy
