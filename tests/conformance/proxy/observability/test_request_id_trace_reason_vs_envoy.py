"""Differential: Envoy's UUID request-id extension packs the HCM's trace decision into the
forwarded x-request-id (pack_trace_reason, default true; UUIDRequestIDExtension::setTraceReason
called from ConnectionManagerUtility::mutateTracingRequestHeader): character 14 becomes `9`
(random sampling), `a` (forced), `b` (x-client-trace-id), and a traced id loses its mark when
overall_sampling turns the decision off. What the upstream sees must match Envoy's."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.proxy.observability.http_support import (
    bootstrap,
    cluster,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
    traced_proxy,
)
from tests.conformance.proxy.observability.test_tracing_vs_envoy import start_envoy, start_sidecar
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.conformance

V4 = "0f8fad5b-d9cb-469f-a165-70867728950e"
V7 = "01890a5d-ac96-774b-bcce-b302099a8057"
SAMPLED = "0f8fad5b-d9cb-969f-a165-70867728950e"
CLIENT = "0f8fad5b-d9cb-b69f-a165-70867728950e"
REQUESTS: tuple[dict[str, str], ...] = (
    {"x-request-id": V4}, {"x-request-id": V7}, {"x-request-id": SAMPLED},
    {"x-request-id": CLIENT}, {"x-request-id": V4, "x-client-trace-id": "abc"},
    {"x-request-id": "not-a-uuid-at-all"}, {"x-request-id": V4.upper()},
    {"x-request-id": V4, "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"},
)
SAMPLING = {"random": {"random_sampling": {"value": 100}},
            "none": {"random_sampling": {"value": 0}},
            "overall-off": {"random_sampling": {"value": 100}, "overall_sampling": {"value": 0}},
            "client-off": {"random_sampling": {"value": 0}, "client_sampling": {"value": 0}}}


def _config(port: int, backend: int, collector: int, sampling: dict[str, Any]) -> dict[str, Any]:
    manager = hcm("backend", tracing=opentelemetry_tracing("otel", "svc", **sampling))
    return bootstrap([http_listener("listener", port, manager)],
                     [cluster("backend", backend), grpc_cluster("otel", collector)])


def _forwarded_ids(start: Callable[[dict[str, Any]], ManagedProcess],
                   sampling: dict[str, Any]) -> list[str | None]:
    config = functools.partial(_config, sampling=sampling)
    with traced_proxy(start, config) as (port, backend, _collector):
        for headers in REQUESTS:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        return [seen.get("x-request-id") for seen in backend.requests]


@pytest.mark.parametrize("sampling", list(SAMPLING))
def test_forwarded_request_id_carries_the_trace_decision_like_envoy(sampling: str) -> None:
    envoy = _forwarded_ids(start_envoy, SAMPLING[sampling])
    print(sampling, envoy)
    assert _forwarded_ids(start_sidecar, SAMPLING[sampling]) == envoy
