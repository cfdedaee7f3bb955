"""Our tracer exports to a real tracing backend (Arize Phoenix) and the spans come back
through its REST API, over OTLP/gRPC and OTLP/HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from proxy.observability.grpc_target import GrpcTarget
from proxy.observability.hooks import Observability
from proxy.observability.request_info import HeaderMap, RequestInfo
from proxy.observability.tracing.config import HttpTarget, TracingConfig
from proxy.stats import Stats
from tests.conformance.proxy.observability.backends import Phoenix

pytestmark = [pytest.mark.conformance, pytest.mark.slow]


def wait_for_spans(phoenix: Phoenix, project: str, count: int,
                   timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = phoenix.spans(project)
        if len(spans) >= count:
            return spans
        time.sleep(0.2)
    raise AssertionError(f"Phoenix has {len(spans)} spans in {project!r}, wanted {count}")


def emit_one_request(observability: Observability, config: TracingConfig) -> tuple[str, str]:
    """A SERVER span continuing an incoming W3C trace, with one CLIENT attempt under it."""
    tracer = observability.tracer(config)
    assert tracer is not None
    trace_id = uuid.uuid4().hex
    headers = HeaderMap([("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01")])
    span = tracer.start_server_span(headers, method="GET", path="/hello", authority="svc")
    attempt = span.start_client_span(cluster="backend", upstream_host="127.0.0.1:8080",
                                     method="GET", path="/hello", authority="svc")
    attempt.finish(status_code=200, duration=0.002)
    span.finish(RequestInfo(start_time=time.time(), duration=0.005, method="GET", path="/hello",
                            authority="svc", protocol="HTTP/1.1", response_code=200,
                            upstream_cluster="backend", upstream_host="127.0.0.1:8080",
                            route_name="hello"))
    assert observability.flush()
    observability.close()
    return trace_id, span.context.span_id_hex


def check_trace(spans: list[dict[str, Any]], trace_id: str, server_span_id: str) -> None:
    # Phoenix's span_kind is OpenInference's (LLM, CHAIN...), not OTLP's: tell them by name.
    by_name = {span["name"]: span for span in spans}
    assert set(by_name) == {"ingress", "router backend egress"}, spans
    server, client = by_name["ingress"], by_name["router backend egress"]
    assert server["context"]["trace_id"] == client["context"]["trace_id"] == trace_id
    assert server["context"]["span_id"] == server_span_id
    assert client["parent_id"] == server_span_id
    assert server["parent_id"] == "00f067aa0ba902b7"
    assert server["attributes"]["http.response.status_code"] == 200
    assert server["attributes"]["upstream_cluster"] == "backend"
    assert server["status_code"] in ("UNSET", "OK")
    assert client["attributes"]["server.port"] == 8080
    assert client["attributes"]["http.request.resend_count"] == 0


def test_spans_over_otlp_grpc_come_back_from_phoenix(phoenix: Phoenix) -> None:
    project = f"pointsman-grpc-{uuid.uuid4().hex[:8]}"
    config = TracingConfig(
        service_name="sidecar", grpc=GrpcTarget(cluster_name="phoenix"),
        resource_attributes=(("openinference.project.name", project),),
        spawn_upstream_span=True)
    stats = Stats()
    resolve = {"phoenix": ("127.0.0.1", phoenix.grpc_port)}.get
    observability = Observability(stats, resolve_cluster=resolve, environ={})
    trace_id, server_span_id = emit_one_request(observability, config)
    spans = wait_for_spans(phoenix, project, 2)
    check_trace(spans, trace_id, server_span_id)
    assert stats.counter("tracing.opentelemetry.spans_sent").value == 2


def test_spans_over_otlp_http_come_back_from_phoenix(phoenix: Phoenix) -> None:
    project = f"pointsman-http-{uuid.uuid4().hex[:8]}"
    config = TracingConfig(
        service_name="sidecar",
        http=HttpTarget(uri=f"http://127.0.0.1:{phoenix.http_port}/v1/traces"),
        resource_attributes=(("openinference.project.name", project),),
        spawn_upstream_span=True)
    stats = Stats()
    trace_id, server_span_id = emit_one_request(Observability(stats, environ={}), config)
    spans = wait_for_spans(phoenix, project, 2)
    check_trace(spans, trace_id, server_span_id)
    assert stats.counter("tracing.opentelemetry.spans_sent").value == 2
