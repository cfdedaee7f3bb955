"""Differential: the listener's traffic_direction reaches the HCM's tracing (Envoy
ConnectionManagerTracingConfig: OUTBOUND is egress, INBOUND and unspecified are ingress).
An egress SERVER span is named `egress <host>` (TracerImpl::startSpan, host = :authority); a
route decorator still names it; x-envoy-decorator-operation is read on ingress only, and on
egress the decorator's operation is sent upstream instead of back downstream
(ConnectionManagerImpl::ActiveStream::traceRequest / encodeHeaders)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance.observability.http_support import (
    RecordingBackend,
    bootstrap,
    cluster,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.conformance.observability.test_tracing_vs_envoy import start_envoy, start_sidecar
from tests.integration.observability.collector import FakeCollector
from tests.support.ports import free_port
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


def _observe(start: Callable[[dict[str, Any]], ManagedProcess],
             direction: str | None) -> tuple[list[Any], list[str]]:
    collector = FakeCollector()
    backend = RecordingBackend("backend")
    port = free_port()
    proxy = start(_config(port, backend.port, collector.port, direction))
    seen = []
    try:
        for path, headers in REQUESTS:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                seen.append((path, response.headers.get("x-envoy-decorator-operation"),
                             backend.requests[-1].get("x-envoy-decorator-operation")))
        names = sorted(span.name for _, span in collector.wait_for_spans(len(REQUESTS)))
    finally:
        proxy.stop()
        backend.stop()
        collector.stop()
    return seen, names


@pytest.mark.parametrize("direction", ["OUTBOUND", "INBOUND", None])
def test_span_name_and_decorator_follow_the_listener_direction(direction: str | None) -> None:
    envoy = _observe(start_envoy, direction)
    print(direction, envoy)
    assert _observe(start_sidecar, direction) == envoy
