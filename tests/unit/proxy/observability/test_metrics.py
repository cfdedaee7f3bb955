"""Semconv request histograms (opentelemetry-sdk) and the Envoy OTLP stat sink."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.observability.metrics import RequestMetrics
from proxy.observability.request_info import RequestInfo
from proxy.observability.stat_sink import StatsToOtlp, translate_stats_sinks
from proxy.stats import Stats

SINK = "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig"


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [point for resource in data.resource_metrics for scope in resource.scope_metrics
            for metric in scope.metrics if metric.name == name
            for point in metric.data.data_points]


def test_server_and_client_duration_histograms_per_route_and_cluster() -> None:
    reader = InMemoryMetricReader()
    metrics = RequestMetrics([reader], {"service.name": "s"})
    for code in (200, 200, 503):
        metrics.record_server(RequestInfo(start_time=0, duration=0.02, method="GET",
                                          response_code=code, route_name="r1",
                                          upstream_cluster="backend", protocol="HTTP/1.1"))
    metrics.record_client(duration=0.01, method="GET", status_code=200, cluster="backend",
                          upstream_host="10.0.0.1:80")
    server = {(p.attributes["http.response.status_code"], p.attributes["http.route"]): p
              for p in points(reader, "http.server.request.duration")}
    assert server[(200, "r1")].count == 2 and server[(503, "r1")].count == 1
    assert server[(503, "r1")].attributes["error.type"] == "503"
    assert server[(200, "r1")].attributes["upstream_cluster"] == "backend"
    [client] = points(reader, "http.client.request.duration")
    assert client.attributes["server.port"] == 80 and client.count == 1
    assert client.explicit_bounds[0] == 0.005
    metrics.close()


def sinks(entries: list[dict[str, Any]]) -> Any:
    from envoy.config.bootstrap.v3 import bootstrap_pb2
    return parse_message({"stats_sinks": entries}, bootstrap_pb2.Bootstrap).stats_sinks


def test_stat_sink_translation_and_refusals() -> None:
    [config] = translate_stats_sinks(sinks([{"name": "envoy.stat_sinks.open_telemetry",
        "typed_config": {"@type": SINK, "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}},
                         "prefix": "envoy.", "report_counters_as_deltas": True}}]))
    assert config.target.cluster_name == "otel" and config.prefix == "envoy."
    assert config.report_counters_as_deltas and config.emit_tags_as_attributes
    statsd = {"name": "envoy.stat_sinks.statsd", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.metrics.v3.StatsdSink",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 8125}}}}
    with pytest.raises(ConfigError, match="StatsdSink") as caught:
        translate_stats_sinks(sinks([statsd]))
    assert caught.value.field == "stats_sinks[0].typed_config"


def test_stats_become_otlp_metrics_with_tags() -> None:
    [config] = translate_stats_sinks(sinks([{"typed_config": {
        "@type": SINK, "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}},
        "report_counters_as_deltas": True}}]))
    stats = Stats()
    stats.counter("cluster.a.upstream_rq_retry").inc(2)
    stats.gauge("cluster.a.membership_healthy").set(3)
    stats.histogram("cluster.a.upstream_rq_time").record(4)
    builder = StatsToOtlp(config, {"service.name": "proxy"})
    first = ExportMetricsServiceRequest.FromString(builder.build(stats))
    metrics = {m.name: m for m in first.resource_metrics[0].scope_metrics[0].metrics}
    retry = metrics["cluster.upstream_rq_retry"].sum
    assert retry.is_monotonic and retry.data_points[0].as_int == 2
    assert retry.data_points[0].attributes[0].key == "envoy_cluster_name"
    assert metrics["cluster.membership_healthy"].gauge.data_points[0].as_int == 3
    assert metrics["cluster.upstream_rq_time"].histogram.data_points[0].count == 1
    stats.counter("cluster.a.upstream_rq_retry").inc(5)
    second = ExportMetricsServiceRequest.FromString(builder.build(stats))
    metrics = {m.name: m for m in second.resource_metrics[0].scope_metrics[0].metrics}
    assert metrics["cluster.upstream_rq_retry"].sum.data_points[0].as_int == 5  # delta


def test_histogram_deltas_are_refused_by_name() -> None:
    with pytest.raises(ConfigError) as caught:
        translate_stats_sinks(sinks([{"typed_config": {
            "@type": SINK, "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}},
            "report_histograms_as_deltas": True}}]))
    assert caught.value.field == "stats_sinks[0].typed_config.report_histograms_as_deltas"


@pytest.mark.parametrize(("extra", "field"), [
    ({"report_histograms_as_deltas": True}, "report_histograms_as_deltas"),
    ({"custom_metric_conversions": {}}, "custom_metric_conversions"),
    ({"grpc_service": {"envoy_grpc": {"cluster_name": "otel", "max_receive_message_length": 1}}},
     "grpc_service.envoy_grpc.max_receive_message_length"),
])
def test_stat_sink_refuses_unimplemented_fields_by_name(extra: dict[str, Any], field: str) -> None:
    typed = {"@type": SINK, "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}}, **extra}
    with pytest.raises(ConfigError) as caught:
        translate_stats_sinks(sinks([{"name": "envoy.stat_sinks.open_telemetry",
                                      "typed_config": typed}]))
    assert caught.value.field == f"stats_sinks[0].typed_config.{field}"
