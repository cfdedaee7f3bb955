"""Request metrics through opentelemetry-sdk: the HTTP semantic-convention duration histograms.

`http.server.request.duration` per downstream request and `http.client.request.duration` per
upstream attempt (seconds, the semconv buckets), with method, status, route (`http.route` = the
route name) and cluster (`upstream_cluster`) attributes; request counts are the histograms'
counts. Exported over OTLP (PeriodicExportingMetricReader; our own encoder and gRPC/HTTP
sender, not opentelemetry-exporter-otlp) when a collector is configured. The Envoy-named
counters and gauges travel through `stat_sink` and `prometheus` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from proxy.observability.otlp_metrics import encode_metrics_data
from proxy.observability.request_info import RequestInfo

LOG = logging.getLogger(__name__)

# Semconv http.*.request.duration advisory buckets (seconds).
DURATION_BUCKETS: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0,
                                     2.5, 5.0, 7.5, 10.0)
_PROTOCOL_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/3": "3"}


class RequestMetrics:
    def __init__(self, readers: Sequence[MetricReader], resource: dict[str, str]) -> None:
        self.provider = MeterProvider(metric_readers=list(readers),
                                      resource=Resource.create(resource), shutdown_on_exit=False)
        meter = self.provider.get_meter("pointsman")
        self._server = meter.create_histogram(
            "http.server.request.duration", unit="s",
            description="Duration of HTTP server requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._client = meter.create_histogram(
            "http.client.request.duration", unit="s",
            description="Duration of HTTP client requests (one per upstream attempt).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS)
        self._attribute_cache: dict[tuple[Any, ...], dict[str, Any]] = {}

    def _attributes(self, key: tuple[Any, ...], build: Any) -> dict[str, Any]:
        found = self._attribute_cache.get(key)
        if found is None:
            if len(self._attribute_cache) > 10_000:
                self._attribute_cache.clear()
            found = self._attribute_cache[key] = build()
        return found

    def record_server(self, info: RequestInfo) -> None:
        if info.duration is None:
            return
        key = (info.method, info.response_code, info.route_name, info.upstream_cluster,
               info.protocol, info.scheme)

        def build() -> dict[str, Any]:
            attributes: dict[str, Any] = {
                "http.request.method": info.method or "_OTHER",
                "url.scheme": info.scheme or "http",
                "network.protocol.version": _PROTOCOL_VERSIONS.get(info.protocol, info.protocol),
            }
            if info.response_code is not None:
                attributes["http.response.status_code"] = info.response_code
            if info.route_name:
                attributes["http.route"] = info.route_name
            if info.upstream_cluster:
                attributes["upstream_cluster"] = info.upstream_cluster
            if info.response_code is None or info.response_code >= 500:
                attributes["error.type"] = str(info.response_code or "no_response")
            return attributes

        self._server.record(info.duration, self._attributes(key, build))

    def record_client(self, *, duration: float, method: str, status_code: int | None,
                      cluster: str, upstream_host: str) -> None:
        key = ("client", method, status_code, cluster, upstream_host)

        def build() -> dict[str, Any]:
            host, _, port = upstream_host.rpartition(":")
            attributes: dict[str, Any] = {"http.request.method": method or "_OTHER",
                                          "upstream_cluster": cluster,
                                          "server.address": host.strip("[]") or upstream_host}
            if port.isdigit():
                attributes["server.port"] = int(port)
            if status_code:
                attributes["http.response.status_code"] = status_code
            if not status_code or status_code >= 400:
                attributes["error.type"] = str(status_code or "no_response")
            return attributes

        self._client.record(duration, self._attributes(key, build))

    def flush(self, timeout: float = 5.0) -> bool:
        return bool(self.provider.force_flush(int(timeout * 1000)))

    def close(self) -> None:
        self.provider.shutdown()


class _DeferredExporter(MetricExporter):
    """Builds the OTLP exporter at the first export: a collector named by cluster is resolved
    once the server's clusters exist. Until it resolves, exports fail (and are retried)."""

    def __init__(self, make: Callable[[], MetricExporter]) -> None:
        super().__init__()
        self._make = make
        self._inner: MetricExporter | None = None

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        if self._inner is None:
            try:
                self._inner = self._make()
            except Exception:  # e.g. the collector's cluster has no endpoint yet
                return MetricExportResult.FAILURE
        return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True if self._inner is None else self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._inner is not None:
            self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


METRICS_EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


class OtlpMetricExporter(MetricExporter):
    """OTLP metrics over gRPC or HTTP, encoded by proxy.observability.otlp_metrics (no
    generated opentelemetry.proto classes, no opentelemetry-exporter-otlp: see otlp_wire)."""

    def __init__(self, send: Callable[[bytes], None]) -> None:
        super().__init__()
        self._send = send

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        try:
            self._send(encode_metrics_data(metrics_data))
        except Exception as error:  # grpc.RpcError, OSError, HTTPError: the SDK retries later
            LOG.debug("metrics export failed: %s", error)
            return MetricExportResult.FAILURE
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def grpc_sender(target: str, *, timeout: float, headers: tuple[tuple[str, str], ...] = (),
                channel_options: tuple[tuple[str, str], ...] = ()) -> Callable[[bytes], None]:
    """Unary OTLP/gRPC Export calls with the bytes as they are (no serializer)."""
    import grpc

    channel = grpc.insecure_channel(target, options=channel_options)
    export = channel.unary_unary(METRICS_EXPORT_METHOD)
    metadata = headers or None

    def send(body: bytes) -> None:
        export(body, timeout=timeout, metadata=metadata)
    return send


def http_sender(url: str, *, timeout: float) -> Callable[[bytes], None]:
    """OTLP/HTTP: POST application/x-protobuf to the metrics URL."""
    import urllib.request

    def send(body: bytes) -> None:
        request = urllib.request.Request(url, data=body, headers={
            "Content-Type": "application/x-protobuf"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    return send


def otlp_reader(endpoint: str | Callable[[], str], *, protocol: str = "grpc",
                interval: float = 5.0, timeout: float = 5.0,
                headers: tuple[tuple[str, str], ...] = (),
                channel_options: tuple[tuple[str, str], ...] = ()) -> MetricReader:
    """A PeriodicExportingMetricReader with an OTLP exporter for `protocol`; `endpoint` may be
    a callable, resolved at the first export. `headers` / `channel_options` (gRPC only): a
    GrpcService's initial_metadata and authority (see GrpcTarget.channel_options)."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    def make() -> MetricExporter:
        target = endpoint() if callable(endpoint) else endpoint
        if protocol == "grpc":
            return OtlpMetricExporter(grpc_sender(target, timeout=timeout, headers=headers,
                                                  channel_options=channel_options))
        return OtlpMetricExporter(http_sender(target, timeout=timeout))

    return PeriodicExportingMetricReader(_DeferredExporter(make),
                                         export_interval_millis=interval * 1000,
                                         export_timeout_millis=timeout * 1000)
