"""A minimal OTLP trace receiver for the demo: gRPC on --grpc-port, spans as JSON on --http-port.

The demo uses it so that `make demo` needs nothing beyond the venv; any OTLP backend (Arize
Phoenix, Jaeger, the OpenTelemetry Collector) can take its place, since the sidecars only speak
OTLP. GET /traces returns {trace_id: [span, ...]} with service name, span name, kind, parent.
"""

from __future__ import annotations

import argparse
import json
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

KINDS = {0: "UNSPECIFIED", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}


class SpanStore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.traces: dict[str, list[dict[str, Any]]] = {}

    def add(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next((a.value.string_value for a in resource_spans.resource.attributes
                                if a.key == "service.name"), "")
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.traces.setdefault(span.trace_id.hex(), []).append({
                            "service": service,
                            "name": span.name,
                            "kind": KINDS.get(span.kind, str(span.kind)),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "duration_ms": (span.end_time_unix_nano - span.start_time_unix_nano)
                            / 1e6,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        })

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {trace: list(spans) for trace, spans in self.traces.items()}


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: SpanStore) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # gRPC method name
        self.store.add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


def serve_http(store: SpanStore, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps(store.snapshot()).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    store = SpanStore()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(store), server)
    server.add_insecure_port(f"127.0.0.1:{args.grpc_port}")
    server.start()
    serve_http(store, args.http_port)
    print(f"collector: OTLP gRPC on {args.grpc_port}, traces on http://127.0.0.1:{args.http_port}/",
          flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
