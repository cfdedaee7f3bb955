"""A fake OTLP/gRPC collector on loopback: keeps every trace, metrics and logs request."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

_SERVICES: dict[str, tuple[Any, Any]] = {
    "opentelemetry.proto.collector.trace.v1.TraceService": (
        trace_service_pb2.ExportTraceServiceRequest, trace_service_pb2.ExportTraceServiceResponse),
    "opentelemetry.proto.collector.metrics.v1.MetricsService": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse),
    "opentelemetry.proto.collector.logs.v1.LogsService": (
        logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
}


class FakeCollector:
    """`decode=False` keeps raw request bytes only (cheap: for benchmarks)."""

    def __init__(self, *, decode: bool = True) -> None:
        self.decode = decode
        self.raw_bytes = 0
        self.raw_requests = 0
        self.traces: list[Any] = []
        self.metrics: list[Any] = []
        self.logs: list[Any] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handlers = []
        for service, (request_type, response_type) in _SERVICES.items():
            sink = {"TraceService": self.traces, "MetricsService": self.metrics,
                    "LogsService": self.logs}[service.rsplit(".", 1)[-1]]
            handlers.append(grpc.method_handlers_generic_handler(service, {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self._exporter(sink, response_type),
                    request_deserializer=request_type.FromString if decode else None,
                    response_serializer=response_type.SerializeToString)}))
        self._server.add_generic_rpc_handlers(handlers)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def _exporter(self, sink: list[Any], response_type: Any) -> Any:
        def export(request: Any, context: grpc.ServicerContext) -> Any:
            with self._lock:
                if self.decode:
                    sink.append(request)
                else:
                    self.raw_bytes += len(request)
                    self.raw_requests += 1
            return response_type()
        return export

    def spans(self) -> list[tuple[dict[str, str], Any]]:
        """(resource attributes, span) for every span received."""
        with self._lock:
            requests = list(self.traces)
        found: list[tuple[dict[str, str], Any]] = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: kv.value.string_value
                            for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope_spans.spans)
        return found

    def wait_for_spans(self, count: int, timeout: float = 20.0) -> list[tuple[dict[str, str],
                                                                               Any]]:
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.1)

    def stop(self) -> None:
        self._server.stop(grace=None)
