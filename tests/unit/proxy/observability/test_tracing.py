"""HCM tracing config, the Tracer's spans, sampling, and the bounded export queue."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import pytest

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.observability.request_info import HeaderMap, RequestInfo
from proxy.observability.tracing.config import TracingConfig, translate_tracing
from proxy.observability.tracing.environment import BatchSettings, tracing_from_environment
from proxy.observability.tracing.export import MemoryExporter, SpanPipeline
from proxy.observability.tracing.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER
from proxy.observability.tracing.tracer import TcpSpan, Tracer
from proxy.stats import Stats

OTEL = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def tracing_message(tracing: dict[str, Any]) -> Any:
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm,
    )
    return parse_message({"stat_prefix": "x", "tracing": tracing},
                         hcm.HttpConnectionManager).tracing


def provider(**config: Any) -> dict[str, Any]:
    return {"name": "envoy.tracers.opentelemetry", "typed_config": {"@type": OTEL, **config}}


def request(*pairs: tuple[str, str], request_id: str | None = None) -> HeaderMap:
    """Request headers as the HCM hands them to the tracer: with an x-request-id (a UUID)."""
    return HeaderMap([("x-request-id", request_id or str(uuid.uuid4())), *pairs])


def make_tracer(config: TracingConfig, stats: Stats | None = None,
                seed: int = 1) -> tuple[Tracer, MemoryExporter]:
    exporter = MemoryExporter()
    stats = stats or Stats()
    pipeline = SpanPipeline(config, stats=stats, settings=BatchSettings(), exporter=exporter)
    return Tracer(config, pipeline, stats, rng=random.Random(seed)), exporter


def finished(tracer: Tracer, exporter: MemoryExporter) -> list[Any]:
    assert tracer.flush()
    return exporter.spans()


def attributes_of(span: Any) -> dict[str, Any]:
    values = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        values[kv.key] = getattr(kv.value, kind)
    return values


def test_translate_full_tracing_block() -> None:
    config = translate_tracing(tracing_message({
        "provider": provider(grpc_service={"envoy_grpc": {"cluster_name": "otel"},
                                           "timeout": "0.25s"}, service_name="front",
                             max_cache_size=64),
        "random_sampling": {"value": 50}, "overall_sampling": {"value": 10},
        "custom_tags": [{"tag": "team", "literal": {"value": "mesh"}},
                        {"tag": "tenant", "request_header": {"name": "X-Tenant",
                                                             "default_value": "none"}}],
        "spawn_upstream_span": True, "max_path_tag_length": 8,
    }))
    assert config.service_name == "front" and config.grpc is not None
    assert config.grpc.cluster_name == "otel" and config.grpc.timeout == 0.25
    assert (config.random_sampling, config.client_sampling, config.overall_sampling) == (
        50.0, 100.0, 10.0)
    assert config.custom_tags[1].request_header == "x-tenant"
    assert config.spawn_upstream_span and config.max_path_tag_length == 8
    assert config.max_cache_size == 64


def test_unsupported_tracing_fields_are_named() -> None:
    with pytest.raises(ConfigError) as caught:
        translate_tracing(tracing_message({"provider": provider(), "verbose": True}))
    assert caught.value.field == "verbose"
    zipkin = {"name": "envoy.tracers.zipkin", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
        "collector_cluster": "z", "collector_endpoint": "/api/v2/spans",
        "collector_endpoint_version": "HTTP_JSON"}}
    with pytest.raises(ConfigError, match="ZipkinConfig") as caught:
        translate_tracing(tracing_message({"provider": zipkin}))
    assert caught.value.field == "provider.typed_config"
    with pytest.raises(ConfigError) as caught:
        translate_tracing(tracing_message({"provider": provider(), "custom_tags": [
            {"tag": "m", "metadata": {"kind": {"request": {}}, "metadata_key": {"key": "k"}}}]}))
    assert caught.value.field == "custom_tags[0].metadata"
    with pytest.raises(ConfigError) as caught:
        translate_tracing(tracing_message({"provider": provider(), "custom_tags": [
            {"tag": "v", "value": "%REQ(:PATH)%"}]}))
    assert caught.value.field == "custom_tags[0].value"


def test_server_span_continues_w3c_parent_with_semconv_attributes() -> None:
    tracer, exporter = make_tracer(TracingConfig(service_name="front"))
    headers = request(("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01"),
                      ("user-agent", "curl"), ("tracestate", "k=v"))
    span = tracer.start_server_span(headers, method="GET", path="/a?b=1", authority="svc")
    assert span.sampled and span.trace_id == TRACE
    injected = dict(span.inject_headers())
    assert injected["traceparent"].startswith(f"00-{TRACE}-") and injected["tracestate"] == "k=v"
    span.finish(RequestInfo(start_time=1.0, duration=0.5, method="GET", path="/a?b=1",
                            authority="svc", protocol="HTTP/1.1", response_code=503,
                            response_flags=("UF",), upstream_cluster="backend",
                            upstream_host="10.0.0.1:80", route_name="r1",
                            request_headers=headers, downstream_remote_address=("1.2.3.4", 5)))
    [server] = finished(tracer, exporter)
    assert server.kind == SPAN_KIND_SERVER and server.parent_span_id.hex() == "00f067aa0ba902b7"
    assert server.trace_id.hex() == TRACE and server.trace_state == "k=v"
    [resource_spans] = exporter.requests[0].resource_spans
    resource = attributes_of(resource_spans.resource)
    assert resource["service.name"] == "front"
    attributes = attributes_of(server)
    assert attributes["http.request.method"] == "GET" and attributes["url.path"] == "/a"
    assert attributes["http.response.status_code"] == 503
    assert attributes["response_flags"] == "UF" and attributes["upstream_cluster"] == "backend"
    assert attributes["http.route"] == "r1" and attributes["network.protocol.version"] == "1.1"
    assert attributes["client.port"] == 5
    assert attributes["user_agent.original"] == "curl"
    # The id forwarded upstream, with the trace decision stamped in it (pack_trace_reason).
    stamped = headers.get("x-request-id")
    assert stamped is not None and span.request_id == stamped[:14] + "9" + stamped[15:]
    assert attributes["guid:x-request-id"] == span.request_id
    assert server.status.code == 2  # STATUS_CODE_ERROR
    assert server.end_time_unix_nano - server.start_time_unix_nano == 500_000_000
    assert server.flags & 0xFF == 1


def test_client_span_per_attempt_when_spawned() -> None:
    tracer, exporter = make_tracer(TracingConfig(spawn_upstream_span=True))
    span = tracer.start_server_span(request(), method="GET", path="/", authority="svc")
    first = span.start_client_span(cluster="backend", upstream_host="10.0.0.1:80")
    first.finish(status_code=503, response_flags=("URX",))
    second = span.start_client_span(cluster="backend", upstream_host="10.0.0.2:80")
    assert dict(second.inject_headers())["traceparent"].split("-")[2] != span.context.span_id_hex
    second.finish(status_code=200)
    span.finish(RequestInfo(start_time=0, duration=0.1, response_code=200))
    spans = finished(tracer, exporter)
    clients = [s for s in spans if s.kind == SPAN_KIND_CLIENT]
    [server] = [s for s in spans if s.kind == SPAN_KIND_SERVER]
    assert len(clients) == 2
    assert all(c.parent_span_id == server.span_id and c.trace_id == server.trace_id
               for c in clients)
    assert [attributes_of(c)["http.request.resend_count"] for c in clients] == [0, 1]
    assert clients[0].status.code == 2 and clients[1].status.code == 0


def test_without_spawn_upstream_sees_the_server_span_as_parent() -> None:
    tracer, exporter = make_tracer(TracingConfig())
    span = tracer.start_server_span(request(), path="/")
    attempt = span.start_client_span(cluster="c", upstream_host="h:1")
    assert attempt.inject_headers() == span.inject_headers()
    attempt.finish(status_code=200)
    span.finish(RequestInfo(start_time=0, response_code=200))
    assert [s.kind for s in finished(tracer, exporter)] == [SPAN_KIND_SERVER]


def test_sampling_decisions() -> None:
    stats = Stats()
    tracer, _ = make_tracer(TracingConfig(random_sampling=0.0, client_sampling=100.0),
                            stats)
    unsampled = tracer.start_server_span(request())
    assert not unsampled.sampled and unsampled.inject_headers()[0][1].endswith("-00")
    unsampled.finish(RequestInfo(start_time=0))
    assert tracer.start_server_span(request(("x-client-trace-id", "1"))).sampled
    assert tracer.start_server_span(request(("x-envoy-force-trace", "1"))).sampled
    # Envoy's OpenTelemetry tracer keeps the decision of an incoming traceparent.
    incoming = request(("traceparent", f"00-{TRACE}-00f067aa0ba902b7-01"))
    assert tracer.start_server_span(incoming).sampled
    incoming_off = request(("traceparent", f"00-{TRACE}-00f067aa0ba902b7-00"))
    forced_off = request(("traceparent", f"00-{TRACE}-00f067aa0ba902b7-00"),
                         ("x-envoy-force-trace", "1"))
    off = tracer.start_server_span(incoming_off)
    assert not off.sampled and off.trace_id == TRACE
    assert not tracer.start_server_span(forced_off).sampled
    assert stats.counter("tracing.not_traceable").value == 3
    assert stats.counter("tracing.service_forced").value == 2
    nothing, _ = make_tracer(TracingConfig(overall_sampling=0.0))
    assert not nothing.start_server_span(request(("x-envoy-force-trace", "1"))).sampled


def test_random_sampling_is_stable_per_request_id() -> None:
    """Envoy (UUIDRequestIDExtension::getInteger, mutateTracingRequestHeader): the first 8 hex
    digits of x-request-id modulo 10,000, against the percentage's numerator over 10,000."""
    stats = Stats()
    half, _ = make_tracer(TracingConfig(random_sampling=50.0), stats, seed=7)
    other, _ = make_tracer(TracingConfig(random_sampling=50.0), seed=8)
    rng = random.Random(3)
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(400)]
    decisions = [half.start_server_span(request(request_id=i)).sampled for i in ids]
    assert decisions == [other.start_server_span(request(request_id=i)).sampled for i in ids]
    assert decisions == [int(i[:8], 16) % 10000 < 5000 for i in ids]
    assert 120 < sum(decisions) < 280
    assert stats.counter("tracing.random_sampling").value == sum(decisions)
    # 0x00001388 % 10000 == 5000: just outside 50%; 0x00001387 just inside.
    assert not half.start_server_span(request(request_id="00001388-0000-4000-8000-0")).sampled
    assert half.start_server_span(request(request_id="00001387-0000-4000-8000-0")).sampled
    # overall_sampling applies to the same value: 50% x 25% keeps values below 2500.
    quarter, _ = make_tracer(TracingConfig(random_sampling=50.0, overall_sampling=25.0))
    assert quarter.start_server_span(request(request_id="000009c3-aaaa")).sampled  # 2499
    assert not quarter.start_server_span(request(request_id="000009c4-aaaa")).sampled  # 2500
    # A trace reason already stamped in a UUID (index 14: 9 sampled, a forced, b client).
    none, _ = make_tracer(TracingConfig(random_sampling=0.0))
    stamped = "ffffffff-0000-9000-8000-000000000000"
    assert none.start_server_span(request(request_id=stamped)).sampled
    assert not none.start_server_span(request(request_id=stamped.replace("-9", "-4"))).sampled
    # No usable request id: Envoy finds the request not traceable.
    everything, _ = make_tracer(TracingConfig(), stats)
    assert not everything.start_server_span(HeaderMap()).sampled
    assert not everything.start_server_span(request(request_id="not-hex-at-all")).sampled
    assert everything.start_server_span(request(request_id="abcdef12")).sampled


def test_custom_tags_literal_and_header() -> None:
    config = translate_tracing(tracing_message({"provider": provider(), "custom_tags": [
        {"tag": "team", "literal": {"value": "mesh"}},
        {"tag": "tenant", "request_header": {"name": "x-tenant", "default_value": "none"}},
        {"tag": "env", "environment": {"name": "POINTSMAN_NO_SUCH_VAR", "default_value": "d"}}]}))
    tracer, exporter = make_tracer(config)
    span = tracer.start_server_span(request())
    span.finish(RequestInfo(start_time=0, response_code=200,
                            request_headers=HeaderMap([("x-tenant", "acme")])))
    [server] = finished(tracer, exporter)
    attributes = attributes_of(server)
    assert (attributes["team"], attributes["tenant"], attributes["env"]) == ("mesh", "acme", "d")


class BlockedExporter:
    def __init__(self) -> None:
        self.release = threading.Event()

    def send(self, request: bytes) -> None:
        self.release.wait(10)
        raise ConnectionError("collector is dead")

    def close(self) -> None:
        self.release.set()


def test_a_stuck_exporter_drops_and_counts_instead_of_blocking() -> None:
    stats = Stats()
    exporter = BlockedExporter()
    settings = BatchSettings(max_queue_size=10, schedule_delay=0.01, max_export_batch_size=5)
    pipeline = SpanPipeline(TracingConfig(), stats=stats, settings=settings, exporter=exporter)
    tracer = Tracer(TracingConfig(), pipeline, stats)
    for _ in range(100):
        tracer.start_server_span(request()).finish(RequestInfo(start_time=0))
    dropped = stats.counter("tracing.opentelemetry.spans_dropped").value
    assert 100 - 10 - 5 <= dropped <= 100 - 10
    exporter.release.set()
    pipeline.close()
    assert stats.counter("tracing.opentelemetry.export_failures").value >= 1


def test_tcp_span_records_bytes_and_sni() -> None:
    exporter = MemoryExporter()
    pipeline = SpanPipeline(TracingConfig(), stats=Stats(), settings=BatchSettings(),
                            exporter=exporter)
    span = TcpSpan(pipeline, listener="l", cluster="db", downstream=("1.1.1.1", 9),
                   server_name="db.local", start_time=10.0)
    span.finish(RequestInfo(start_time=10.0, duration=2.0, bytes_received=5, bytes_sent=7,
                            upstream_host="10.0.0.9:5432"))
    assert pipeline.flush()
    [tcp] = exporter.spans()
    attributes = attributes_of(tcp)
    assert attributes["tls.server_name"] == "db.local"
    assert attributes["network.io.bytes_sent"] == 7
    assert attributes["upstream_address"] == "10.0.0.9:5432"


def test_otel_environment_variables() -> None:
    assert tracing_from_environment({}) is None
    config = tracing_from_environment({
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_SERVICE_NAME": "svc",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=a%20b",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    assert config is not None and config.grpc is not None
    assert config.grpc.target_uri == "127.0.0.1:4317" and config.service_name == "svc"
    assert ("team", "a b") in config.resource_attributes and config.random_sampling == 25.0
    http = tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})
    assert http is not None and http.http is not None
    assert http.http.uri == "http://c:4318/v1/traces"
    assert tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317",
                                     "OTEL_SDK_DISABLED": "true"}) is None
    with pytest.raises(ConfigError, match="OTEL_TRACES_SAMPLER"):
        tracing_from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "x:1",
                                  "OTEL_TRACES_SAMPLER": "jaeger_remote"})


def test_collector_cluster_resolved_at_first_export_and_failure_counted() -> None:
    from proxy.observability.grpc_target import GrpcTarget

    stats = Stats()
    config = TracingConfig(grpc=GrpcTarget(cluster_name="not-yet"))
    settings = BatchSettings(schedule_delay=0.01)
    pipeline = SpanPipeline(config, stats=stats, settings=settings, resolve=lambda name: None)
    Tracer(config, pipeline, stats).start_server_span(request()).finish(
        RequestInfo(start_time=0, response_code=200))
    assert pipeline.flush()
    assert stats.counter("tracing.opentelemetry.export_failures").value == 1
    pipeline.close()


def test_span_names_follow_envoy() -> None:
    """Envoy 1.40 (checked with a fake collector): the SERVER span is "ingress", or the HCM's
    `operation`; CLIENT spans "router <cluster> egress", or `upstream_operation`."""
    tracer, exporter = make_tracer(TracingConfig(spawn_upstream_span=True))
    span = tracer.start_server_span(request(), method="GET", path="/a?b", authority="svc")
    span.start_client_span(cluster="backend", upstream_host="h:1").finish(status_code=200)
    span.finish(RequestInfo(start_time=0, response_code=200))
    named, named_exporter = make_tracer(TracingConfig(spawn_upstream_span=True,
                                                      operation="op", upstream_operation="up"))
    other = named.start_server_span(request())
    other.start_client_span(cluster="backend", upstream_host="h:1").finish(status_code=200)
    other.finish(RequestInfo(start_time=0, response_code=200))
    assert sorted(s.name for s in finished(tracer, exporter)) == [
        "ingress", "router backend egress"]
    assert sorted(s.name for s in finished(named, named_exporter)) == ["op", "up"]
    # A listener with traffic_direction OUTBOUND: "egress <:authority>" (TracerImpl::startSpan);
    # the HCM's `operation` still wins.
    egress, egress_exporter = make_tracer(TracingConfig(egress=True))
    egress.start_server_span(request(), authority="svc.example:8080").finish(
        RequestInfo(start_time=0, response_code=200))
    assert [s.name for s in finished(egress, egress_exporter)] == ["egress svc.example:8080"]
    operation, operation_exporter = make_tracer(TracingConfig(egress=True, operation="op"))
    operation.start_server_span(request(), authority="svc").finish(
        RequestInfo(start_time=0, response_code=200))
    assert [s.name for s in finished(operation, operation_exporter)] == ["op"]
    with pytest.raises(ConfigError) as caught:
        translate_tracing(tracing_message({"provider": provider(),
                                           "operation": "%REQ(:PATH)%"}))
    assert caught.value.field == "operation"


def test_all_zero_ids_are_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """W3C Trace Context: an all-zero trace id or parent id is invalid."""
    import proxy.observability.tracing.tracer as tracer_module

    monkeypatch.setattr(tracer_module, "getrandbits", lambda bits: 0)
    tracer, _ = make_tracer(TracingConfig())
    span = tracer.start_server_span(request())
    _, trace_id, span_id, _ = dict(span.inject_headers())["traceparent"].split("-")
    assert int(trace_id, 16) and int(span_id, 16)
    assert span.trace_id == trace_id and span.context.span_id_hex == span_id


@pytest.mark.parametrize(("config", "extra", "request_id", "forwarded"), [
    (TracingConfig(), (), "0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d9cb-969f"),
    (TracingConfig(), (("x-client-trace-id", "c"),), "0f8fad5b-d9cb-469f-a165-70867728950e",
     "0f8fad5b-d9cb-b69f"),
    (TracingConfig(), (), "0f8fad5b-d9cb-b69f-a165-70867728950e", None),
    (TracingConfig(random_sampling=0), (), "0f8fad5b-d9cb-769f-a165-70867728950e", None),
    (TracingConfig(overall_sampling=0), (), "0f8fad5b-d9cb-969f-a165-70867728950e",
     "0f8fad5b-d9cb-469f"),
    (TracingConfig(), (), "0f8fad5b-not-a-uuid", None),
])
def test_trace_decision_is_packed_into_the_request_id(
        config: TracingConfig, extra: tuple[tuple[str, str], ...], request_id: str,
        forwarded: str | None) -> None:
    """UUIDRequestIDExtension::setTraceReason as Envoy 1.40 applies it (pinned by
    tests/conformance/proxy/observability/test_request_id_trace_reason_vs_envoy.py)."""
    tracer, _ = make_tracer(config)
    span = tracer.start_server_span(request(*extra, request_id=request_id))
    if forwarded is None:
        assert span.request_id is None
    else:
        assert span.request_id == forwarded + request_id[len(forwarded):]


@pytest.mark.parametrize(("config", "field"), [
    ({"grpc_service": {"envoy_grpc": {"cluster_name": "c", "skip_envoy_headers": True}}},
     "grpc_service.envoy_grpc.skip_envoy_headers"),
    ({"grpc_service": {"google_grpc": {"target_uri": "h:1", "channel_args": {}}}},
     "grpc_service.google_grpc.channel_args"),
    ({"http_service": {"http_uri": {"uri": "http://c/v1/traces", "cluster": "c",
                                    "timeout": "1s"},
                       "request_headers_to_add": [{"header": {"key": "k", "raw_value": "dg=="}}]}},
     "http_service.request_headers_to_add[0].header.raw_value"),
])
def test_exporter_fields_we_do_not_implement_are_named(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        translate_tracing(tracing_message({"provider": provider(**config)}))
    assert caught.value.field == f"provider.typed_config.{field}"


def test_exporter_authority_and_metadata_reach_the_target() -> None:
    config = translate_tracing(tracing_message({"provider": provider(grpc_service={
        "envoy_grpc": {"cluster_name": "otel", "authority": "collector.example"},
        "initial_metadata": [{"key": "x-token", "value": "t"}]})}))
    assert config is not None and config.grpc is not None
    assert config.grpc.authority == "collector.example"
    assert config.grpc.metadata == (("x-token", "t"),)
