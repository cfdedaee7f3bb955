"""The Tracer hook the HTTP connection manager calls, one per HCM (built from TracingConfig).

Per downstream request:  span = tracer.start_server_span(headers, method=..., path=..., ...)
Per upstream attempt:    attempt = span.start_client_span(cluster=..., upstream_host=...)
                         headers_to_set = attempt.inject_headers()   (traceparent, tracestate)
                         attempt.finish(status_code=..., response_flags=...)
At stream end:           span.finish(request_info)

Sampling follows Envoy's HCM rules (HttpConnectionManager.Tracing docs): an incoming sampling
decision (W3C flags, B3) is kept; otherwise `x-envoy-force-trace` traces, `x-client-trace-id`
traces with `client_sampling`, and other requests with `random_sampling`; `overall_sampling` is
applied last. Unsampled requests create no span but still propagate a context with flags 00.
Client spans exist only with `spawn_upstream_span: true`, as in Envoy; otherwise the upstream
sees the server span as its parent. Attributes follow the OpenTelemetry HTTP semantic
conventions, plus Envoy's `upstream_cluster`, `upstream_address` and `response_flags` tags.
"""

from __future__ import annotations

import random
import time
from typing import Any

from proxy.observability.request_info import HeaderAccessor, RequestInfo, format_address
from proxy.observability.tracing.config import TracingConfig
from proxy.observability.tracing.export import SpanPipeline
from proxy.observability.tracing.otlp import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, SpanRecord
from proxy.observability.tracing.propagation import (
    TraceContext,
    extract,
    inject,
    new_span_id,
    new_trace_id,
)
from proxy.stats import Stats

_PROTOCOL_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/3": "3"}


def _end_ns(record: SpanRecord, duration: float | None) -> int:
    """The span's own start plus the measured (monotonic) duration; now when unknown."""
    if duration is None:
        return time.time_ns()
    return record.start_ns + round(duration * 1e9)


class ClientSpan:
    """One upstream attempt (CLIENT span), or a stand-in when no span is spawned."""

    __slots__ = ("_pipeline", "_record", "context")

    def __init__(self, pipeline: SpanPipeline | None, record: SpanRecord | None,
                 context: TraceContext) -> None:
        self._pipeline = pipeline
        self._record = record
        self.context = context

    def inject_headers(self) -> list[tuple[str, str]]:
        return inject(self.context)

    def finish(self, *, status_code: int | None = None, response_flags: tuple[str, ...] = (),
               error: str = "", duration: float | None = None) -> None:
        record, self._record = self._record, None
        if record is None or self._pipeline is None:
            return
        attributes = record.attributes
        if status_code:
            attributes["http.response.status_code"] = status_code
        if response_flags:
            attributes["response_flags"] = ",".join(response_flags)
        # Semconv: a client span is an error for 4xx/5xx or no response at all.
        if error or not status_code or status_code >= 400:
            attributes["error.type"] = error or str(status_code or "no_response")
            record.error = True
        record.end_ns = _end_ns(record, duration)
        self._pipeline.submit(record)


class ServerSpan:
    """One downstream request (SERVER span); `context` is what upstreams see as parent."""

    __slots__ = ("_attempts", "_record", "_tracer", "context")

    def __init__(self, tracer: Tracer, record: SpanRecord | None, context: TraceContext) -> None:
        self._tracer = tracer
        self._record = record
        self.context = context
        self._attempts = 0

    @property
    def sampled(self) -> bool:
        return self.context.sampled

    @property
    def trace_id(self) -> str:
        return self.context.trace_id_hex

    def inject_headers(self) -> list[tuple[str, str]]:
        return inject(self.context)

    def start_client_span(self, *, cluster: str, upstream_host: str, method: str = "",
                          path: str = "", authority: str = "") -> ClientSpan:
        self._attempts += 1
        config = self._tracer.config
        if self._record is None or not config.spawn_upstream_span:
            return ClientSpan(None, None, self.context)
        attributes: dict[str, Any] = {
            "upstream_cluster": cluster, "upstream_address": upstream_host,
            "http.request.resend_count": self._attempts - 1,
        }
        if method:
            attributes["http.request.method"] = method
        if path:
            attributes["url.full"] = f"http://{authority}{path}"[:config.max_path_tag_length]
        host, _, port = upstream_host.rpartition(":")
        if host and port.isdigit():
            attributes["server.address"] = host.strip("[]")
            attributes["server.port"] = int(port)
        record = SpanRecord(self.context.trace_id, new_span_id(), self.context.span_id,
                            config.upstream_operation or f"router {cluster} egress",
                            SPAN_KIND_CLIENT, time.time_ns(), attributes=attributes,
                            tracestate=self.context.tracestate)
        context = TraceContext(record.trace_id, record.span_id, True, record.tracestate)
        return ClientSpan(self._tracer.pipeline, record, context)

    def finish(self, info: RequestInfo) -> None:
        record, self._record = self._record, None
        if record is None:
            return
        config = self._tracer.config
        record.attributes.update(_server_attributes(info, config.max_path_tag_length))
        for tag in config.custom_tags:
            value = tag.literal if tag.literal is not None else (
                info.request_header(tag.request_header) or tag.default_value)
            if value:
                record.attributes[tag.tag] = value
        if info.response_code is None or info.response_code >= 500:
            record.attributes["error.type"] = str(info.response_code or "no_response")
            record.error = True
        record.end_ns = _end_ns(record, info.duration)
        self._tracer.pipeline.submit(record)


def _server_attributes(info: RequestInfo, max_path: int) -> dict[str, Any]:
    path, _, query = info.path.partition("?")
    attributes: dict[str, Any] = {
        "http.request.method": info.method or "_OTHER",
        "url.path": path[:max_path],
        "url.scheme": info.scheme or "http",
        "server.address": info.authority,
        "network.protocol.name": "http",
        "network.protocol.version": _PROTOCOL_VERSIONS.get(info.protocol, info.protocol),
        "component": "proxy",
        "response_flags": info.response_flags_text,
        "http.request.body.size": info.bytes_received,
        "http.response.body.size": info.bytes_sent,
    }
    if query:
        attributes["url.query"] = query
    if info.response_code is not None:
        attributes["http.response.status_code"] = info.response_code
    if info.route_name:
        attributes["http.route"] = info.route_name
    if info.downstream_remote_address is not None:
        attributes["client.address"] = info.downstream_remote_address[0]
        attributes["client.port"] = info.downstream_remote_address[1]
    user_agent = info.request_header("user-agent")
    if user_agent:
        attributes["user_agent.original"] = user_agent
    if info.upstream_cluster:
        attributes["upstream_cluster"] = info.upstream_cluster
    if info.upstream_host:
        attributes["upstream_address"] = info.upstream_host
    request_id = info.request_header("x-request-id")
    if request_id:
        attributes["guid:x-request-id"] = request_id
    return attributes


class Tracer:
    def __init__(self, config: TracingConfig, pipeline: SpanPipeline, stats: Stats,
                 *, rng: random.Random | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self._random = (rng or random.Random()).random
        self._not_traced = stats.counter("tracing.not_traceable")
        self._random_sampled = stats.counter("tracing.random_sampling")
        self._client_enabled = stats.counter("tracing.client_enabled")
        self._service_forced = stats.counter("tracing.service_forced")

    def _decide(self, headers: HeaderAccessor, incoming: bool | None) -> bool:
        """Envoy's HCM tracing decision (stats: tracing.random_sampling, ...)."""
        if incoming is not None:
            decided = incoming
        elif headers.get("x-envoy-force-trace") is not None:
            self._service_forced.inc()
            decided = True
        elif headers.get("x-client-trace-id") is not None:
            decided = self._chance(self.config.client_sampling)
            if decided:
                self._client_enabled.inc()
        else:
            decided = self._chance(self.config.random_sampling)
            if decided:
                self._random_sampled.inc()
        if decided and not self._chance(self.config.overall_sampling):
            decided = False
        if not decided:
            self._not_traced.inc()
        return decided

    def _chance(self, percent: float) -> bool:
        return percent >= 100.0 or (percent > 0.0 and self._random() * 100.0 < percent)

    def start_server_span(self, headers: HeaderAccessor, *, method: str = "", path: str = "",
                          authority: str = "", start_time: float | None = None) -> ServerSpan:
        parent, incoming = extract(headers)
        sampled = self._decide(headers, incoming)
        trace_id = parent.trace_id if parent is not None else new_trace_id()
        tracestate = parent.tracestate if parent is not None else ""
        context = TraceContext(trace_id, new_span_id(), sampled, tracestate)
        if not sampled:
            return ServerSpan(self, None, context)
        start_ns = int(start_time * 1e9) if start_time is not None else time.time_ns()
        record = SpanRecord(trace_id, context.span_id, parent.span_id if parent else 0,
                            self.config.operation or _span_name(method, authority, path),
                            SPAN_KIND_SERVER, start_ns, tracestate=tracestate)
        return ServerSpan(self, record, context)

    def flush(self, timeout: float = 5.0) -> bool:
        return self.pipeline.flush(timeout)


def _span_name(method: str, authority: str, path: str) -> str:
    """Envoy names the HCM span after the request: `<authority><path>` without the query."""
    return f"{authority}{path.partition('?')[0]}" or method or "ingress"


class TcpSpan:
    """A span per tcp_proxy connection (L4): bytes, duration, upstream host, SNI."""

    __slots__ = ("_pipeline", "_record")

    def __init__(self, pipeline: SpanPipeline, *, listener: str, cluster: str,
                 downstream: tuple[str, int] | None, server_name: str = "",
                 start_time: float | None = None) -> None:
        start_ns = int(start_time * 1e9) if start_time is not None else time.time_ns()
        attributes: dict[str, Any] = {"upstream_cluster": cluster, "listener": listener,
                                      "network.transport": "tcp"}
        if downstream is not None:
            attributes["client.address"] = downstream[0]
            attributes["client.port"] = downstream[1]
        if server_name:
            attributes["tls.server_name"] = server_name
        self._pipeline = pipeline
        self._record = SpanRecord(new_trace_id(), new_span_id(), 0, f"tcp_proxy {cluster}",
                                  SPAN_KIND_SERVER, start_ns, attributes=attributes)

    def finish(self, info: RequestInfo) -> None:
        record = self._record
        record.attributes.update({
            "upstream_address": info.upstream_host,
            "network.io.bytes_received": info.bytes_received,
            "network.io.bytes_sent": info.bytes_sent,
            "response_flags": info.response_flags_text,
            "peer.address": format_address(info.downstream_remote_address),
        })
        record.error = bool(info.response_flags)
        record.end_ns = _end_ns(record, info.duration)
        self._pipeline.submit(record)
