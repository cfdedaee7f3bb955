"""Differential: which x-envoy-* request headers an external client may pass through, at the
edge (use_remote_address) and at an intermediate hop (ConnectionManagerUtility::
cleanInternalHeaders): Envoy and Pointsman forward the same ones to the upstream."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest

from proxy.http.request_headers import ENVOY_CONTROL_HEADERS
from tests.conformance.proxy.observability.http_support import (
    RecordingBackend,
    bootstrap,
    cluster,
    hcm,
    http_listener,
)
from tests.conformance.proxy.observability.test_tracing_vs_envoy import start_envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

# Headers that change the router's behaviour (timeouts, retries) are left out: both proxies
# strip them from external requests, and sending them would change the exchange itself.
SENT = sorted(ENVOY_CONTROL_HEADERS - {
    "x-envoy-upstream-rq-timeout-alt-response", "x-envoy-max-retries",
    "x-envoy-upstream-rq-timeout-ms", "x-envoy-upstream-rq-per-try-timeout-ms",
    "x-envoy-expected-rq-timeout-ms"})


def _forwarded(kind: str, edge: bool) -> list[str]:
    backend = RecordingBackend("backend")
    port = free_port()
    manager = hcm("backend")
    manager["use_remote_address"] = edge
    config: dict[str, Any] = bootstrap([http_listener("l", port, manager)],
                                       [cluster("backend", backend.port)])
    if kind == "envoy":
        proxy = start_envoy(config)
    else:
        proxy = Pointsman(config, name="pointsman-envoy-headers")
        proxy.wait_ready()
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/",
                                         headers=dict.fromkeys(SENT, "1"))
        urllib.request.urlopen(request, timeout=10).read()
        received = {name.lower() for name in backend.requests[-1]}
    finally:
        proxy.stop()
        backend.stop()
    return [name for name in SENT if name in received]


@pytest.mark.parametrize("edge", [True, False], ids=["edge", "intermediate"])
def test_same_envoy_headers_reach_the_upstream(edge: bool) -> None:
    envoy = _forwarded("envoy", edge)
    assert envoy, "Envoy forwards at least x-envoy-external-address"
    assert _forwarded("pointsman", edge) == envoy
