"""OTLP metrics encoding, by hand (see proxy.observability.otlp_wire for why): the SDK's
MetricsData (the semconv request histograms) and the Stats store (the stat sink) -> protobuf
wire bytes of ExportMetricsServiceRequest.

Field numbers are from opentelemetry/proto/metrics/v1/metrics.proto and collector/metrics/v1/
metrics_service.proto: ResourceMetrics{resource 1, scope_metrics 2}, ScopeMetrics{scope 1,
metrics 2}, Metric{name 1, description 2, unit 3, gauge 5, sum 7, histogram 9},
Gauge{data_points 1}, Sum{data_points 1, aggregation_temporality 2, is_monotonic 3},
Histogram{data_points 1, aggregation_temporality 2}, NumberDataPoint{start_time_unix_nano 2,
time_unix_nano 3, as_double 4, as_int 6, attributes 7}, HistogramDataPoint{start 2, time 3,
count 4, sum 5, bucket_counts 6, explicit_bounds 7, attributes 9, min 11, max 12}.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.observability.otlp_wire import (
    AttributeValue,
    double,
    encode_attributes,
    encode_resource,
    encode_scope,
    enum,
    fixed64,
    length_delimited,
    packed_double,
    packed_fixed64,
    tag,
    varint,
)

TEMPORALITY_DELTA = 1
TEMPORALITY_CUMULATIVE = 2


@dataclass(frozen=True)
class NumberPoint:
    attributes: Sequence[tuple[str, AttributeValue]]
    start_ns: int
    time_ns: int
    value: int | float


@dataclass(frozen=True)
class HistogramPoint:
    attributes: Sequence[tuple[str, AttributeValue]]
    start_ns: int
    time_ns: int
    count: int
    total: float
    bucket_counts: Sequence[int]
    bounds: Sequence[float]
    minimum: float | None = None
    maximum: float | None = None


def number_point(point: NumberPoint) -> bytes:
    value = point.value
    body = [fixed64(2, point.start_ns), fixed64(3, point.time_ns)]
    if isinstance(value, int) and not isinstance(value, bool):
        body.append(fixed64(6, value))  # as_int, sfixed64
    else:
        body.append(double(4, float(value)))
    body.append(encode_attributes(7, point.attributes))
    return b"".join(body)


def histogram_point(point: HistogramPoint) -> bytes:
    body = [fixed64(2, point.start_ns), fixed64(3, point.time_ns), fixed64(4, point.count),
            double(5, point.total), packed_fixed64(6, point.bucket_counts),
            packed_double(7, point.bounds), encode_attributes(9, point.attributes)]
    if point.minimum is not None:
        body.append(double(11, point.minimum))
    if point.maximum is not None:
        body.append(double(12, point.maximum))
    return b"".join(body)


def metric(name: str, data: bytes, *, description: str = "", unit: str = "") -> bytes:
    """A Metric; `data` is one of gauge(), sum_() or histogram()."""
    body = length_delimited(1, name.encode())
    if description:
        body += length_delimited(2, description.encode())
    if unit:
        body += length_delimited(3, unit.encode())
    return length_delimited(2, body + data)  # as a ScopeMetrics.metrics field


def gauge(points: Iterable[NumberPoint]) -> bytes:
    return length_delimited(5, b"".join(length_delimited(1, number_point(p)) for p in points))


def sum_(points: Iterable[NumberPoint], *, temporality: int, monotonic: bool) -> bytes:
    body = b"".join(length_delimited(1, number_point(p)) for p in points)
    body += enum(2, temporality) + (tag(3, 0) + varint(1) if monotonic else b"")
    return length_delimited(7, body)


def histogram(points: Iterable[HistogramPoint], *, temporality: int) -> bytes:
    body = b"".join(length_delimited(1, histogram_point(p)) for p in points)
    return length_delimited(9, body + enum(2, temporality))


def request(resource: Sequence[tuple[str, AttributeValue]], scope: str,
            metrics: Iterable[bytes], scope_version: str = "") -> bytes:
    """ExportMetricsServiceRequest{resource_metrics: [{resource, scope_metrics: [{scope,
    metrics}]}]} with `metrics` from metric()."""
    scope_metrics = length_delimited(2, encode_scope(scope, scope_version) + b"".join(metrics))
    return length_delimited(1, encode_resource(resource) + scope_metrics)


# --- the SDK's MetricsData ----------------------------------------------------------------------

def encode_metrics_data(data: Any) -> bytes:
    """opentelemetry.sdk.metrics.export.MetricsData -> ExportMetricsServiceRequest bytes (Sum,
    Gauge and Histogram points: what the SDK's explicit-bucket aggregations produce)."""
    out = []
    for resource_metrics in data.resource_metrics:
        scopes = []
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            body = encode_scope(scope.name, scope.version or "")
            body += b"".join(_sdk_metric(item) for item in scope_metrics.metrics)
            scopes.append(length_delimited(2, body))
        attributes = sorted(dict(resource_metrics.resource.attributes).items())
        out.append(length_delimited(1, encode_resource(attributes) + b"".join(scopes)))
    return b"".join(out)


def _sdk_metric(item: Any) -> bytes:
    data = item.data
    kind = type(data).__name__
    if kind == "Histogram":
        encoded = histogram((HistogramPoint(
            tuple(dict(p.attributes).items()), p.start_time_unix_nano, p.time_unix_nano,
            p.count, p.sum, tuple(p.bucket_counts), tuple(p.explicit_bounds),
            p.min, p.max) for p in data.data_points),
            temporality=int(data.aggregation_temporality))
    elif kind == "Sum":
        encoded = sum_(_number_points(data.data_points),
                       temporality=int(data.aggregation_temporality),
                       monotonic=bool(data.is_monotonic))
    elif kind == "Gauge":
        encoded = gauge(_number_points(data.data_points))
    else:  # exponential histograms: none of our instruments make them
        return b""
    return metric(item.name, encoded, description=item.description or "",
                  unit=item.unit or "")


def _number_points(points: Iterable[Any]) -> Iterable[NumberPoint]:
    for p in points:
        yield NumberPoint(tuple(dict(p.attributes).items()),
                          getattr(p, "start_time_unix_nano", 0) or 0, p.time_unix_nano, p.value)
