"""The span export pipeline: opentelemetry-sdk TracerProvider + a bounded batch processor.

One pipeline per (collector, resource): the data path ends spans into a bounded queue
(`proxy.observability.batching`), a thread exports batches over OTLP gRPC or HTTP. A full queue
drops spans and counts them in `tracing.opentelemetry.spans_dropped`; exported spans are counted in
`tracing.opentelemetry.spans_sent` (Envoy's stat name), failed exports in
`tracing.opentelemetry.export_failures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from proxy.observability.batching import BackgroundBatcher
from proxy.observability.grpc_target import ClusterResolver
from proxy.observability.tracing.config import TracingConfig
from proxy.observability.tracing.environment import BatchSettings
from proxy.stats import Stats

DEFAULT_SERVICE_NAME = "unknown_service:pointsman"
INSTRUMENTATION_NAME = "pointsman"


class BoundedSpanProcessor(SpanProcessor):
    """BatchSpanProcessor semantics with the drops counted in proxy.stats."""

    def __init__(self, exporter: SpanExporter, stats: Stats, settings: BatchSettings) -> None:
        self._exporter = exporter
        self._sent = stats.counter("tracing.opentelemetry.spans_sent")
        self._failures = stats.counter("tracing.opentelemetry.export_failures")
        dropped = stats.counter("tracing.opentelemetry.spans_dropped")
        self._batcher: BackgroundBatcher[ReadableSpan] = BackgroundBatcher(
            self._export, name="otel-span-export", max_queue=settings.max_queue_size,
            max_batch=settings.max_export_batch_size, interval=settings.schedule_delay,
            on_drop=dropped.inc)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        self._batcher.add(span)

    def _export(self, spans: list[ReadableSpan]) -> None:
        result = self._exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            self._sent.inc(len(spans))
        else:
            self._failures.inc()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._batcher.flush_now(timeout_millis / 1000.0)

    def shutdown(self) -> None:
        self._batcher.close(timeout=2.0)
        self._exporter.shutdown()

    @property
    def queued(self) -> int:
        return len(self._batcher)


def build_exporter(config: TracingConfig, resolve: ClusterResolver | None) -> SpanExporter:
    if config.grpc is not None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )
        return GrpcSpanExporter(endpoint=config.grpc.endpoint(resolve), insecure=True,
                                timeout=config.grpc.timeout,
                                headers=dict(config.grpc.headers) or None)
    if config.http is not None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpSpanExporter,
        )
        return HttpSpanExporter(endpoint=_http_endpoint(config, resolve),
                                timeout=config.http.timeout,
                                headers=dict(config.http.headers) or None)
    return _NoExporter()


def _http_endpoint(config: TracingConfig, resolve: ClusterResolver | None) -> str:
    """Envoy sends to `http_uri.cluster` with the uri's path; without a resolvable cluster we
    use the uri itself."""
    from urllib.parse import urlsplit, urlunsplit

    assert config.http is not None
    parts = urlsplit(config.http.uri)
    address = resolve(config.http.cluster) if (resolve and config.http.cluster) else None
    if address is None:
        return config.http.uri
    host, port = address
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class _NoExporter(SpanExporter):
    """OpenTelemetryConfig without a collector: Envoy accepts it and exports nowhere."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class SpanPipeline:
    """A TracerProvider with our processor; `tracer` is what Tracer objects start spans on."""

    def __init__(self, config: TracingConfig, *, stats: Stats, settings: BatchSettings,
                 resolve: ClusterResolver | None = None, exporter: SpanExporter | None = None,
                 extra_resource: dict[str, str] | None = None) -> None:
        attributes: dict[str, Any] = dict(config.resource_attributes)
        attributes.update(extra_resource or {})
        attributes["service.name"] = config.service_name or DEFAULT_SERVICE_NAME
        self.processor = BoundedSpanProcessor(
            exporter or build_exporter(config, resolve), stats, settings)
        self.provider = TracerProvider(resource=Resource.create(attributes), sampler=ALWAYS_ON,
                                       shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer(INSTRUMENTATION_NAME)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.processor.force_flush(int(timeout * 1000))

    def close(self) -> None:
        self.provider.shutdown()
