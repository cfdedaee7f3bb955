"""Differential: the same OpenTelemetry tracing bootstrap on Envoy and on the sidecar exports a
SERVER span with the configured service name, and the upstream sees a `traceparent` of that
trace (a new trace, and a continued incoming W3C trace)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conformance.proxy.observability.http_support import (
    RecordingBackend,
    bootstrap,
    cluster,
    get,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.conformance.proxy.observability.wiring import require_sidecar_tracing
from tests.integration.proxy.observability.collector import FakeCollector
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.conformance

INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_KIND_SERVER = 2


def tracing_bootstrap(port: int, backend_port: int, collector_port: int,
                      service_name: str) -> dict[str, Any]:
    return bootstrap(
        [http_listener("ingress", port, hcm("backend", tracing=opentelemetry_tracing(
            "otel", service_name)))],
        [cluster("backend", backend_port), grpc_cluster("otel", collector_port)])


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    server = FakeCollector()
    try:
        yield server
    finally:
        server.stop()


def start_sidecar(config: dict[str, Any]) -> ManagedProcess:
    require_sidecar_tracing(
        config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
            "typed_config"])
    sidecar = Pointsman(config, name="pointsman-tracing")
    sidecar.wait_ready()
    return sidecar


def start_envoy(config: dict[str, Any]) -> ManagedProcess:
    # Envoy's OTel tracer flushes every 5 s by default; the runtime key makes the test quick.
    config = {**config, "layered_runtime": {"layers": [{"name": "static", "static_layer": {
        "tracing.opentelemetry.flush_interval_ms": 100}}]}}
    envoy = Envoy(config, name="envoy-tracing")
    envoy.wait_ready()
    return envoy


def check_proxy(start: Callable[[dict[str, Any]], ManagedProcess],
                collector: FakeCollector, service_name: str) -> None:
    backend = RecordingBackend("backend")
    port = free_port()
    proxy = start(tracing_bootstrap(port, backend.port, collector.port, service_name))
    try:
        assert get(f"http://127.0.0.1:{port}/new")[0] == 200
        incoming = f"00-{INCOMING_TRACE}-00f067aa0ba902b7-01"
        assert get(f"http://127.0.0.1:{port}/continued", {"traceparent": incoming})[0] == 200
        spans = collector.wait_for_spans(2)
    finally:
        proxy.stop()
        backend.stop()
    servers = [(resource, span) for resource, span in spans if span.kind == SPAN_KIND_SERVER]
    assert len(servers) == 2, spans
    assert {resource.get("service.name") for resource, _ in servers} == {service_name}
    upstream_parents = [headers["traceparent"].split("-") for headers in backend.requests]
    trace_ids = {span.trace_id.hex() for _, span in servers}
    assert {parts[1] for parts in upstream_parents} == trace_ids
    assert INCOMING_TRACE in trace_ids
    continued = next(span for _, span in servers if span.trace_id.hex() == INCOMING_TRACE)
    assert continued.parent_span_id.hex() == "00f067aa0ba902b7"
    exported_ids = {span.span_id.hex() for _, span in spans}
    assert {parts[2] for parts in upstream_parents} <= exported_ids  # parents were exported
    assert all(parts[3] == "01" for parts in upstream_parents)


def test_envoy_exports_server_spans_and_propagates(collector: FakeCollector) -> None:
    check_proxy(start_envoy, collector, "front-envoy")


def test_sidecar_exports_server_spans_and_propagates(collector: FakeCollector) -> None:
    check_proxy(start_sidecar, collector, "front-sidecar")
