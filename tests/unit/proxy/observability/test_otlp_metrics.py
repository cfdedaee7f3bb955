"""OTLP metrics encoded by hand (proxy.observability.otlp_metrics), decoded with the generated
classes: what the SDK measured arrives whole."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from proxy.observability.otlp_metrics import encode_metrics_data


def _collected() -> ExportMetricsServiceRequest:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader],
                             resource=Resource.create({"service.name": "svc"}))
    meter = provider.get_meter("pointsman", "1.2")
    histogram = meter.create_histogram("duration", unit="s", description="how long",
                                       explicit_bucket_boundaries_advisory=(0.1, 1.0))
    histogram.record(0.05, {"method": "GET"})
    histogram.record(0.5, {"method": "GET"})
    histogram.record(3.0, {"method": "GET"})
    meter.create_counter("requests").add(7, {"code": 200})
    meter.create_up_down_counter("active").add(-2)

    def observe(options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(0.25, {"kind": "ratio"})

    meter.create_observable_gauge("ratio", callbacks=[observe])
    data = reader.get_metrics_data()
    provider.shutdown()
    return ExportMetricsServiceRequest.FromString(encode_metrics_data(data))


def test_the_sdks_metrics_decode_whole() -> None:
    request = _collected()
    [resource_metrics] = request.resource_metrics
    assert {kv.key: kv.value.string_value for kv in resource_metrics.resource.attributes}[
        "service.name"] == "svc"
    [scope_metrics] = resource_metrics.scope_metrics
    assert (scope_metrics.scope.name, scope_metrics.scope.version) == ("pointsman", "1.2")
    metrics = {metric.name: metric for metric in scope_metrics.metrics}

    duration = metrics["duration"]
    assert (duration.unit, duration.description) == ("s", "how long")
    [point] = duration.histogram.data_points
    assert duration.histogram.aggregation_temporality == \
        metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    assert (point.count, point.sum, point.min, point.max) == (3, 3.55, 0.05, 3.0)
    assert list(point.explicit_bounds) == [0.1, 1.0]
    assert list(point.bucket_counts) == [1, 1, 1]
    assert point.start_time_unix_nano and point.time_unix_nano >= point.start_time_unix_nano
    assert [(kv.key, kv.value.string_value) for kv in point.attributes] == [("method", "GET")]

    requests = metrics["requests"].sum
    assert requests.is_monotonic
    assert requests.data_points[0].as_int == 7
    assert [(kv.key, kv.value.int_value) for kv in requests.data_points[0].attributes] == [
        ("code", 200)]
    active = metrics["active"].sum
    assert not active.is_monotonic and active.data_points[0].as_int == -2
    assert metrics["ratio"].gauge.data_points[0].as_double == 0.25
