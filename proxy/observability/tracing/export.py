"""The span export pipeline: a bounded queue, a thread that sends OTLP batches.

The data path encodes each ended span (`tracing.otlp`, a few microseconds) and queues the bytes
(`proxy.observability.batching`): no I/O. The thread frames a batch and sends it once over
OTLP/gRPC or OTLP/HTTP with the collector's timeout; a failed send is counted and the batch
dropped (no retry loop, so a dead collector costs one fast failure per batch). A full queue
drops spans. Stats: `tracing.opentelemetry.spans_sent` (Envoy's name), `.spans_dropped`,
`.export_failures`.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from proxy.observability.batching import BackgroundBatcher
from proxy.observability.grpc_target import ClusterResolver, GrpcTarget
from proxy.observability.tracing.config import HttpTarget, TracingConfig
from proxy.observability.tracing.environment import BatchSettings
from proxy.observability.tracing.otlp import (
    SpanRecord,
    encode_request_from_fields,
    encode_resource,
    encode_scope,
    encode_span_field,
)
from proxy.stats import Stats

LOG = logging.getLogger(__name__)
DEFAULT_SERVICE_NAME = "unknown_service:pointsman"
INSTRUMENTATION_NAME = "pointsman"
TRACE_EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class TraceExporter(Protocol):
    def send(self, request: bytes) -> None:
        """Send one encoded ExportTraceServiceRequest; raise on failure."""

    def close(self) -> None: ...


class GrpcTraceExporter:
    """OTLP/gRPC with the bytes we encoded (no serializer: grpc sends them as they are).

    The channel is made at the first send: a collector named by cluster is resolved then
    (it may arrive over CDS after the listener that traces to it)."""

    def __init__(self, target: GrpcTarget, resolve: ClusterResolver | None) -> None:
        self._target = target
        self._resolve = resolve
        self._channel: Any = None
        self._export: Any = None
        self._metadata = target.headers or None

    def send(self, request: bytes) -> None:
        if self._export is None:
            self._channel = self._target.open_channel(self._resolve)
            self._export = self._channel.unary_unary(TRACE_EXPORT_METHOD)
        self._export(request, timeout=self._target.timeout, metadata=self._metadata)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


class HttpTraceExporter:
    """OTLP/HTTP: POST application/x-protobuf (Envoy sends to http_uri.cluster, uri's path)."""

    def __init__(self, target: HttpTarget, resolve: ClusterResolver | None) -> None:
        self._target = target
        self._resolve = resolve
        self._timeout = target.timeout
        self._headers = {"Content-Type": "application/x-protobuf", **dict(target.headers)}

    def send(self, request: bytes) -> None:
        http_request = urllib.request.Request(_http_url(self._target, self._resolve),
                                              data=request, headers=self._headers,
                                              method="POST")
        with urllib.request.urlopen(http_request, timeout=self._timeout) as response:
            response.read()

    def close(self) -> None:
        return None


def _http_url(target: HttpTarget, resolve: ClusterResolver | None) -> str:
    parts = urlsplit(target.uri)
    address = resolve(target.cluster) if (resolve is not None and target.cluster) else None
    if address is None:
        return target.uri
    host, port = address
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class NoExporter:
    """OpenTelemetryConfig without a collector: Envoy accepts it and exports nowhere."""

    def send(self, request: bytes) -> None:
        return None

    def close(self) -> None:
        return None


class MemoryExporter:
    """A fake collector for tests: decodes every request with the generated OTLP classes."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def send(self, request: bytes) -> None:
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.requests.append(trace_service_pb2.ExportTraceServiceRequest.FromString(request))

    def spans(self) -> list[Any]:
        return [span for request in self.requests for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans for span in scope_spans.spans]

    def close(self) -> None:
        return None


def build_exporter(config: TracingConfig, resolve: ClusterResolver | None) -> TraceExporter:
    if config.grpc is not None:
        return GrpcTraceExporter(config.grpc, resolve)
    if config.http is not None:
        return HttpTraceExporter(config.http, resolve)
    return NoExporter()


class SpanPipeline:
    """Spans of one resource (service) to one collector."""

    def __init__(self, config: TracingConfig, *, stats: Stats, settings: BatchSettings,
                 resolve: ClusterResolver | None = None, exporter: TraceExporter | None = None,
                 extra_resource: dict[str, str] | None = None, exporting: bool = True) -> None:
        """`exporting=False`: no export thread and no exporter; spans are discarded."""
        attributes: dict[str, str] = dict(config.resource_attributes)
        attributes.update(extra_resource or {})
        attributes["service.name"] = config.service_name or DEFAULT_SERVICE_NAME
        attributes.setdefault("telemetry.sdk.name", "pointsman")
        attributes.setdefault("telemetry.sdk.language", "python")
        self.resource = dict(attributes)
        self._resource = encode_resource(sorted(attributes.items()))
        self._scope = encode_scope(INSTRUMENTATION_NAME)
        self._sent = stats.counter("tracing.opentelemetry.spans_sent")
        self._failures = stats.counter("tracing.opentelemetry.export_failures")
        self._batcher: BackgroundBatcher[bytes] | None = None
        if not exporting:  # the --concurrency parent: built to validate, never fed
            self._exporter: TraceExporter = NoExporter()
            self._add: Callable[[bytes], None] = _discard
            return
        self._exporter = exporter or build_exporter(config, resolve)
        dropped = stats.counter("tracing.opentelemetry.spans_dropped")
        self._batcher = BackgroundBatcher(
            self._export, name="otel-span-export", max_queue=settings.max_queue_size,
            max_batch=settings.max_export_batch_size, interval=settings.schedule_delay,
            on_drop=dropped.inc)
        self._add = self._batcher.add

    def submit(self, span: SpanRecord) -> None:
        """Encode on the caller's thread (measured cheaper than handing records to the export
        thread: no GIL ping-pong with the event loop) and queue the bytes."""
        self._add(encode_span_field(span))

    @property
    def submit_encoded(self) -> Callable[[bytes], None]:
        """Queue a span already encoded as a ScopeSpans.spans field (the batcher's `add`)."""
        return self._add

    def _export(self, spans: list[bytes]) -> None:
        try:
            self._exporter.send(encode_request_from_fields(self._resource, self._scope, spans))
        except Exception as error:  # grpc.RpcError, OSError, HTTPError: drop the batch
            self._failures.inc()
            if self._failures.value == 1 or self._failures.value % 100 == 0:
                LOG.warning("span export failed (%d failures so far): %s",
                            self._failures.value, error)
            return
        self._sent.inc(len(spans))

    @property
    def queued(self) -> int:
        return len(self._batcher) if self._batcher is not None else 0

    def flush(self, timeout: float = 5.0) -> bool:
        return self._batcher is None or self._batcher.flush_now(timeout)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close(timeout=2.0)
        self._exporter.close()

    def __repr__(self) -> str:
        return f"SpanPipeline({self.resource.get('service.name')!r}, {self._batcher!r})"


def _discard(_span: bytes) -> None:
    pass
