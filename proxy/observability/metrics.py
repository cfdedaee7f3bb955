"""Request metrics through opentelemetry-sdk: the HTTP semantic-convention duration histograms.

`http.server.request.duration` per downstream request and `http.client.request.duration` per
upstream attempt (seconds, the semconv buckets), with method, status, route (`http.route` = the
route name) and cluster (`upstream_cluster`) attributes; request counts are the histograms'
counts. Exported over OTLP (PeriodicExportingMetricReader) when a collector is configured. The
Envoy-named counters and gauges travel through `stat_sink` and `prometheus` instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

from proxy.observability.request_info import RequestInfo

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


def otlp_reader(endpoint: str | Callable[[], str], *, protocol: str = "grpc",
                interval: float = 5.0, timeout: float = 5.0,
                headers: tuple[tuple[str, str], ...] = (),
                channel_options: tuple[tuple[str, str], ...] = ()) -> MetricReader:
    """A PeriodicExportingMetricReader with the OTLP exporter for `protocol`; `endpoint` may be
    a callable, resolved at the first export. `headers` / `channel_options` (gRPC only): a
    GrpcService's initial_metadata and authority (see GrpcTarget.channel_options)."""
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    def make() -> MetricExporter:
        target = endpoint() if callable(endpoint) else endpoint
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )
            return GrpcMetricExporter(endpoint=target, insecure=True, timeout=timeout,
                                      headers=headers or None,
                                      channel_options=cast(Any, channel_options) or None)
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HttpMetricExporter,
        )
        return HttpMetricExporter(endpoint=target, timeout=timeout)

    return PeriodicExportingMetricReader(_DeferredExporter(make),
                                         export_interval_millis=interval * 1000,
                                         export_timeout_millis=timeout * 1000)
