"""Differential: absolute-form request targets (RFC 9112 3.2.2) with the HCM's
http_protocol_options.allow_absolute_url unset (Envoy: true) and false, Envoy vs
`pointsman proxy`. With it, host and path come from the target; without it, the target stays
the :path, and Envoy's HCM answers any path not starting with `/` with 404 (absolute_path)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.http.clients import H1Client
from tests.support.differential import envoy_and_pointsman
from tests.support.http_backends import EchoBackend

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def bootstrap(port: int, backend_port: int, allow: bool | None) -> dict[str, Any]:
    hcm: dict[str, Any] = {
        "@type": HCM, "stat_prefix": "abs", "http_filters": [ROUTER],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "echo"}},
            {"match": {"safe_regex": {"regex": "http://.*"}}, "route": {"cluster": "echo"}},
        ]}]}}
    if allow is not None:
        hcm["http_protocol_options"] = {"allow_absolute_url": allow}
    return {"static_resources": {
        "listeners": [{"name": "abs", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm}]}]}],
        "clusters": [{"name": "echo", "type": "STATIC", "connect_timeout": "1s",
                      "load_assignment": {"cluster_name": "echo", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": backend_port}}}}]}]}}]}}


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
