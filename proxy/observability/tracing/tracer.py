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

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import TraceFlags, TraceState

from proxy.observability.request_info import HeaderAccessor, RequestInfo, format_address
from proxy.observability.tracing.config import TracingConfig
from proxy.observability.tracing.export import SpanPipeline
from proxy.observability.tracing.propagation import (
    TraceContext,
    extract,
    inject,
    new_span_id,
    new_trace_id,
)
from proxy.stats import Stats

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_PROTOCOL_VERSIONS = {"HTTP/1.0": "1.0", "HTTP/1.1": "1.1", "HTTP/2": "2", "HTTP/3": "3"}


class ClientSpan:
    """One upstream attempt (SpanKind.CLIENT), or a stand-in when no span is spawned."""

    __slots__ = ("_span", "context")

    def __init__(self, span: Any | None, context: TraceContext) -> None:
        self._span = span
        self.context = context

    def inject_headers(self) -> list[tuple[str, str]]:
        return inject(self.context)

    def finish(self, *, status_code: int | None = None, response_flags: tuple[str, ...] = (),
               error: str = "") -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        if status_code:
            span.set_attribute("http.response.status_code", status_code)
        if response_flags:
            span.set_attribute("response_flags", ",".join(response_flags))
        # Semconv: a client span is an error for 4xx/5xx or no response at all.
        if error or not status_code or status_code >= 400:
            span.set_attribute("error.type", error or str(status_code or "no_response"))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class ServerSpan:
    """One downstream request (SpanKind.SERVER); `context` is what upstreams see as parent."""

    __slots__ = ("_attempts", "_custom", "_span", "_tracer", "context")

    def __init__(self, tracer: Tracer, span: Any | None, context: TraceContext,
                 custom: dict[str, str]) -> None:
        self._tracer = tracer
        self._span = span
        self.context = context
        self._custom = custom
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
        if self._span is None or not self._tracer.config.spawn_upstream_span:
            return ClientSpan(None, self.context)
        config = self._tracer.config
        attributes: dict[str, Any] = {
            "upstream_cluster": cluster, "upstream_address": upstream_host,
            "http.request.method": method, "url.full": f"http://{authority}{path}"[
                :config.max_path_tag_length],
            "http.request.resend_count": self._attempts - 1,
        }
        host, _, port = upstream_host.rpartition(":")
        if host:
            attributes["server.address"] = host.strip("[]")
            attributes["server.port"] = int(port) if port.isdigit() else 0
        name = config.upstream_operation or f"router {cluster} egress"
        span = self._tracer.pipeline.tracer.start_span(
            name, context=trace.set_span_in_context(self._span), kind=SpanKind.CLIENT,
            attributes=attributes)
        context = span.get_span_context()
        return ClientSpan(span, TraceContext(context.trace_id, context.span_id, True,
                                             self.context.tracestate))

    def finish(self, info: RequestInfo) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        span.set_attributes(_server_attributes(info, self._tracer.config.max_path_tag_length))
        for tag in self._tracer.config.custom_tags:
            value = tag.literal if tag.literal is not None else (
                info.request_header(tag.request_header) or tag.default_value)
            if value:
                span.set_attribute(tag.tag, value)
        if info.response_code is None or info.response_code >= 500:
            span.set_attribute("error.type", str(info.response_code or "no_response"))
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_end_time(span, info))


def _end_time(span: Any, info: RequestInfo) -> int | None:
    """The span's own start plus the measured (monotonic) duration; now when unknown."""
    if info.duration is None or span.start_time is None:
        return None
    return int(span.start_time) + round(info.duration * 1e9)


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
    attributes["response_flags"] = info.response_flags_text
    attributes["http.request.body.size"] = info.bytes_received
    attributes["http.response.body.size"] = info.bytes_sent
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
        tracestate = parent.tracestate if parent is not None else ""
        if not sampled:
            trace_id = parent.trace_id if parent is not None else new_trace_id()
            return ServerSpan(self, None, TraceContext(trace_id, new_span_id(), False,
                                                       tracestate), {})
        if parent is not None:
            remote = SpanContext(parent.trace_id, parent.span_id, is_remote=True,
                                 trace_flags=_SAMPLED,
                                 trace_state=TraceState.from_header([tracestate])
                                 if tracestate else None)
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        else:
            context = None
        name = self.config.operation or _span_name(method, authority, path)
        start_ns = int(start_time * 1e9) if start_time is not None else time.time_ns()
        span = self.pipeline.tracer.start_span(name, context=context, kind=SpanKind.SERVER,
                                               start_time=start_ns)
        own = span.get_span_context()
        return ServerSpan(self, span, TraceContext(own.trace_id, own.span_id, True, tracestate),
                          {})

    def flush(self, timeout: float = 5.0) -> bool:
        return self.pipeline.flush(timeout)


def _span_name(method: str, authority: str, path: str) -> str:
    """Envoy names the HCM span after the request: `<authority><path>` without the query."""
    return f"{authority}{path.partition('?')[0]}" or method or "ingress"


class TcpSpan:
    """A span per tcp_proxy connection (L4): bytes, duration, upstream host, SNI."""

    __slots__ = ("_span",)

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
        self._span = pipeline.tracer.start_span(f"tcp_proxy {cluster}", kind=SpanKind.SERVER,
                                                attributes=attributes, start_time=start_ns)

    def finish(self, info: RequestInfo) -> None:
        span = self._span
        span.set_attributes({
            "upstream_address": info.upstream_host,
            "network.io.bytes_received": info.bytes_received,
            "network.io.bytes_sent": info.bytes_sent,
            "response_flags": info.response_flags_text,
            "peer.address": format_address(info.downstream_remote_address),
        })
        if info.response_flags:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=_end_time(span, info))
