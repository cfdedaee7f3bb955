"""Differential: the listener's traffic_direction reaches the HCM's tracing (Envoy
ConnectionManagerTracingConfig: OUTBOUND is egress, INBOUND and unspecified are ingress).
An egress SERVER span is named `egress <host>` (TracerImpl::startSpan, host = :authority); a
route decorator still names it; x-envoy-decorator-operation is read on ingress only, and on
egress the decorator's operation is sent upstream instead of back downstream
(ConnectionManagerImpl::ActiveStream::traceRequest / encodeHeaders). The OpenTelemetry tracer
gives the HCM's span kind CLIENT on egress and SERVER on ingress."""

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
from tests.conformance.proxy.observability.test_decorator_vs_envoy import observe_decorators
from tests.conformance.proxy.observability.test_tracing_vs_envoy import start_envoy, start_sidecar
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.conformance

REQUESTS = (("/c", {"host": "svc.example:8080"}),
            ("/a", {"host": "svc.example"}),
            ("/c", {"host": "other.example", "x-envoy-decorator-operation": "client"}))


def _config(port: int, backend: int, collector: int, direction: str | None) -> dict[str, Any]:
    manager = hcm("backend", tracing=opentelemetry_tracing("otel", "svc"))
    manager["route_config"]["virtual_hosts"][0]["routes"] = [
        {"match": {"prefix": "/a"}, "route": {"cluster": "backend"},
         "decorator": {"operation": "op-a"}},
        {"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]
    listener = http_listener("listener", port, manager)
    if direction is not None:
        listener["traffic_direction"] = direction
    return bootstrap([listener], [cluster("backend", backend), grpc_cluster("otel", collector)])


@pytest.mark.parametrize("direction", ["OUTBOUND", "INBOUND", None])
def test_span_name_and_decorator_follow_the_listener_direction(direction: str | None) -> None:
    config = functools.partial(_config, direction=direction)
    envoy = observe_decorators(start_envoy, config, REQUESTS)
    print(direction, envoy)
    assert observe_decorators(start_sidecar, config, REQUESTS) == envoy


def _span_kinds(start: Callable[[dict[str, Any]], ManagedProcess],
                direction: str | None) -> list[tuple[str, int]]:
    """The (name, kind) of each exported span, sorted."""
    config = functools.partial(_config, direction=direction)
    with traced_proxy(start, config) as (port, _backend, collector):
        for path, headers in REQUESTS:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        return sorted((span.name, span.kind)
                      for _, span in collector.wait_for_spans(len(REQUESTS)))


@pytest.mark.parametrize("direction", ["OUTBOUND", "INBOUND"])
def test_span_kind_follows_the_listener_direction(direction: str) -> None:
    envoy = _span_kinds(start_envoy, direction)
    expected_kind = 3 if direction == "OUTBOUND" else 2  # SPAN_KIND_CLIENT / SPAN_KIND_SERVER
    assert {kind for _, kind in envoy} == {expected_kind}, envoy
    assert _span_kinds(start_sidecar, direction) == envoy
