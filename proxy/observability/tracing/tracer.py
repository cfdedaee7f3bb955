"""The Tracer hook the HTTP connection manager calls, one per HCM (built from TracingConfig).

Per downstream request:  span = tracer.start_server_span(headers, method=..., path=..., ...)
Per upstream attempt:    attempt = span.start_client_span(cluster=..., upstream_host=...)
                         headers_to_set = attempt.inject_headers()   (traceparent, tracestate)
                         attempt.finish(status_code=..., response_flags=...)
                         (the router does this only when span.spawns_client_spans; else it
                         sets span.inject_headers() on each attempt)
At stream end:           span.finish(request_info), or span.finish_shaped(shape, ...) when
                         only the span reads the request

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
from collections.abc import Callable, Iterable
from random import getrandbits
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
from proxy.observability.tracing.span_encoder import ServerSpanEncoder
from proxy.stats import Stats


def _end_ns(record: SpanRecord, duration: float | None) -> int:
    """The span's own start plus the measured (monotonic) duration; now when unknown."""
    if duration is None:
        return time.time_ns()
    return record.start_ns + round(duration * 1e9)


class ClientSpan:
    """One upstream attempt (CLIENT span), or a stand-in when no span is spawned."""

    __slots__ = ("_pipeline", "_record", "context")
    spawned = True  # its own span id: callers copy the request headers per attempt

    def __init__(self, pipeline: SpanPipeline | None, record: SpanRecord | None,
                 context: TraceContext) -> None:
        self._pipeline = pipeline
        self._record = record
        self.context = context

    def inject_headers(self) -> list[tuple[str, str]]:
        return inject(self.context)

    def set_attribute(self, key: str, value: Any) -> None:
        if self._record is not None:
            self._record.attributes[key] = value

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


class _UnspawnedAttempt:
    """An upstream attempt without its own span (spawn_upstream_span off, Envoy's default):
    the upstream sees the SERVER span as its parent."""

    __slots__ = ("_server",)
    spawned = False

    def __init__(self, server: ServerSpan) -> None:
        self._server = server

    def inject_headers(self) -> list[tuple[str, str]]:
        return self._server.inject_headers()

    def finish(self, *, status_code: int | None = None, response_flags: tuple[str, ...] = (),
               error: str = "", duration: float | None = None) -> None:
        return None


class ServerSpan:
    """One downstream request (SERVER span). Plain fields only: the span is encoded straight
    to OTLP bytes when it finishes (`span_encoder.ServerSpanEncoder`)."""

    __slots__ = ("_attempts", "_finished", "_headers", "_tracer", "ids", "name", "parent_span_id",
                 "request_id", "sampled", "start_ns", "tracestate")

    def __init__(self, tracer: Tracer, ids: bytes, parent_span_id: int, sampled: bool,
                 tracestate: str, name: str, start_ns: int,
                 headers: dict[str, str] | None = None) -> None:
        self._tracer = tracer
        self._headers = headers  # the request headers tracing reads, kept from the start
        self.ids = ids  # trace id (16 bytes) + span id (8 bytes), as OTLP and W3C write them
        self.parent_span_id = parent_span_id
        self.sampled = sampled
        self.tracestate = tracestate
        self.name = name
        self.start_ns = start_ns
        self._attempts = 0
        self._finished = not sampled
        # The x-request-id to forward when the trace decision was stamped into it, else None.
        self.request_id: str | None = None

    @property
    def trace_id_int(self) -> int:
        return int.from_bytes(self.ids[:16], "big")

    @property
    def span_id(self) -> int:
        return int.from_bytes(self.ids[16:], "big")

    @property
    def context(self) -> TraceContext:
        """What upstreams see as parent."""
        return TraceContext(self.trace_id_int, self.span_id, self.sampled, self.tracestate)

    @property
    def trace_id(self) -> str:
        return self.ids[:16].hex()

    @property
    def egress(self) -> bool:
        """The HCM's tracing operation is egress (its listener is OUTBOUND)."""
        return self._tracer.egress

    def inject_headers(self) -> list[tuple[str, str]]:
        # bytes.hex() of the stored ids: formatting 128-bit ints with :032x cost ~2% of the
        # traced request's CPU in py-spy.
        ids = self.ids.hex()
        traceparent = f"00-{ids[:32]}-{ids[32:]}-{'01' if self.sampled else '00'}"
        if self.tracestate:
            return [("traceparent", traceparent), ("tracestate", self.tracestate)]
        return [("traceparent", traceparent)]

    @property
    def spawns_client_spans(self) -> bool:
        """Whether each upstream attempt gets a CLIENT span of its own (sampled, and
        spawn_upstream_span); otherwise every attempt carries inject_headers() as they are."""
        return self.sampled and self._tracer.config.spawn_upstream_span

    def start_client_span(self, *, cluster: str, upstream_host: str, method: str = "",
                          path: str = "", authority: str = "") -> ClientSpan | _UnspawnedAttempt:
        self._attempts += 1
        config = self._tracer.config
        if not self.sampled or not config.spawn_upstream_span:
            return _UnspawnedAttempt(self)
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
        record = SpanRecord(self.trace_id_int, new_span_id(), self.span_id,
                            config.upstream_operation or f"router {cluster} egress",
                            SPAN_KIND_CLIENT, time.time_ns(), attributes=attributes,
                            tracestate=self.tracestate)
        context = TraceContext(record.trace_id, record.span_id, True, record.tracestate)
        return ClientSpan(self._tracer.pipeline, record, context)

    def start_mirror_span(self, *, cluster: str, sampled: bool | None) -> ClientSpan:
        """The "mirror" CLIENT span of a shadow request (Envoy's async client spawns it under
        the request's span): sampled as the mirror policy's trace_sampled says, else as this
        span (checked against Envoy 1.40 in tests/conformance/proxy/http/test_mirror_vs_envoy.py).
        Unsampled, it only carries the trace context."""
        sampled = self.sampled if sampled is None else sampled
        span_id = new_span_id()
        context = TraceContext(self.trace_id_int, span_id, sampled, self.tracestate)
        if not sampled:
            return ClientSpan(None, None, context)
        record = SpanRecord(self.trace_id_int, span_id, self.span_id, "mirror",
                            SPAN_KIND_CLIENT, time.time_ns(),
                            attributes={"upstream_cluster": cluster},
                            tracestate=self.tracestate)
        return ClientSpan(self._tracer.pipeline, record, context)

    def finish_shaped(self, shape: tuple[object, ...], duration: float,
                      record: Callable[[], RequestInfo]) -> None:
        """finish() from the request's shape (span_encoder.request_shape order) and duration;
        the request record is built only if the span needs more (a new shape, custom tags)."""
        if self._finished:
            return
        tracer = self._tracer
        if tracer.header_tags or self._headers is None:
            self.finish(record())
            return
        self._finished = True
        tracer.queue_span(tracer.encoder.encode_shaped_field(
            self.ids, self.parent_span_id, self.tracestate, self.name, self.start_ns,
            self.start_ns + round(duration * 1e9), shape, record, self._headers))

    def finish(self, info: RequestInfo) -> None:
        if self._finished:
            return
        self._finished = True
        tracer = self._tracer
        header_tags = [(tag, value) for tag, header, default in tracer.header_tags
                       if (value := info.request_header(header) or default)] \
            if tracer.header_tags else ()
        duration = info.duration
        end_ns = time.time_ns() if duration is None else self.start_ns + round(duration * 1e9)
        tracer.queue_span(tracer.encoder.encode_field(
            self.ids, self.parent_span_id, self.tracestate, self.name, self.start_ns, end_ns,
            info, header_tags, self._headers))


class Tracer:
    def __init__(self, config: TracingConfig, pipeline: SpanPipeline, stats: Stats,
                 *, rng: random.Random | None = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.queue_span = pipeline.submit_encoded
        self._random = (rng or random.Random()).random
        self._not_traced = stats.counter("tracing.not_traceable")
        self._random_sampled = stats.counter("tracing.random_sampling")
        self._client_enabled = stats.counter("tracing.client_enabled")
        self._service_forced = stats.counter("tracing.service_forced")
        # Envoy turns the HCM percentages into numerators over 10,000
        # (PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT(..., 10000, 10000)).
        self._random_numerator = round(config.random_sampling * 100)
        self._overall_numerator = round(config.overall_sampling * 100)
        literal = [(tag.tag, tag.literal) for tag in config.custom_tags
                   if tag.literal is not None and tag.literal]
        self.header_tags = tuple((tag.tag, tag.request_header, tag.default_value)
                                 for tag in config.custom_tags if tag.literal is None)
        self.encoder = ServerSpanEncoder(config.max_path_tag_length, literal,
                                         egress=config.egress)
        # Envoy 1.40 names the HCM's span after HttpConnectionManager.Tracing.operation, else
        # "ingress", or "egress <host>" on a listener with traffic_direction OUTBOUND
        # (TracerImpl::startSpan; host = :authority). A route decorator's operation overrides
        # (the HCM's _decorate_span). Checked against Envoy with a fake collector.
        self._name = config.operation or "ingress"
        self.egress = config.egress
        self._egress_name = config.egress and not config.operation

    def _decide(self, headers: HeaderAccessor) -> tuple[bool, str]:
        """Envoy's HCM tracing decision, stable per x-request-id.

        ConnectionManagerUtility::mutateTracingRequestHeader: the UUID request-id extension
        gives the integer value of the id's first 8 hex digits (no such value: the request is
        not traceable); `x-client-trace-id` traces with `client_sampling` (a random draw),
        `x-envoy-force-trace` forces, otherwise `random_sampling` traces when value % 10000 is
        below the percentage's numerator over 10,000; `overall_sampling` applies to the same
        value last. So every proxy sampling at the same rates takes the same decision for one
        request id. A trace reason already stamped in the id (its 15th character: `9`
        sampled, `a` forced, `b` client) keeps the request traced, as in Envoy.
        Returns (traced, the trace-reason mark to stamp into the id or ""): a new decision
        stamps its reason, and overall_sampling turning one off stamps `4` (setTraceReason).
        Stats: tracing.random_sampling, .service_forced, .client_enabled, .not_traceable.
        """
        request_id = headers.get("x-request-id")
        value = _request_id_value(request_id) if request_id is not None else None
        if value is None:
            self._not_traced.inc()
            return False, ""
        decided, mark = False, ""
        assert request_id is not None
        if len(request_id) == 36 and request_id[14] in _TRACED_REASONS:
            decided = True
        elif headers.get("x-client-trace-id") is not None and \
                self._chance(self.config.client_sampling):
            self._client_enabled.inc()
            decided, mark = True, _CLIENT_FORCED
        elif headers.get("x-envoy-force-trace") is not None:
            self._service_forced.inc()
            decided, mark = True, _SERVICE_FORCED
        elif value % 10000 < self._random_numerator:
            self._random_sampled.inc()
            decided, mark = True, _SAMPLED
        if decided and value % 10000 >= self._overall_numerator:
            decided, mark = False, _NOT_TRACEABLE
        if not decided:
            self._not_traced.inc()
        return decided, mark

    def _chance(self, percent: float) -> bool:
        return percent >= 100.0 or (percent > 0.0 and self._random() * 100.0 < percent)

    def start_server_span(self, headers: Iterable[tuple[str, str]], *, method: str = "",
                          path: str = "", authority: str = "",
                          start_time: float | None = None) -> ServerSpan:
        """The SERVER span of one request (`headers`: lower-case names, as the HCM has them).

        An incoming sampled flag (W3C `traceparent`, or B3) decides, as Envoy's OpenTelemetry
        tracer keeps the parent's decision; otherwise the HCM decision above."""
        found: dict[str, str] = {}
        for name, value in headers:  # one pass for the ~8 headers tracing reads
            if name in _TRACING_HEADERS and name not in found:
                found[name] = value
        sampled, mark = self._decide(found)
        request_id = None
        if mark:
            # UUIDRequestIDExtension::setTraceReason (pack_trace_reason, Envoy's default): the
            # decision goes into index 14 of a 36-character x-request-id, forwarded so the
            # next proxies keep it (the HCM sets span.request_id on the request); other ids
            # are left alone. The span's guid tag shows the new id.
            current = found["x-request-id"]
            if len(current) == 36 and current[14] != mark:
                found["x-request-id"] = request_id = current[:14] + mark + current[15:]
        parent_span_id, tracestate = 0, ""
        ids = b""
        if not _CONTEXT_HEADERS.isdisjoint(found):
            parent, incoming = extract(found)
            if incoming is not None:
                sampled = incoming
            if parent is not None:
                parent_span_id, tracestate = parent.span_id, parent.tracestate
                ids = parent.trace_id.to_bytes(16, "big") + getrandbits(64).to_bytes(8, "big")
        if not ids:
            ids = getrandbits(192).to_bytes(24, "big")
        if ids[16:] == _ZERO_SPAN_ID or ids[:16] == _ZERO_TRACE_ID:  # invalid in W3C (2^-64)
            ids = new_trace_id().to_bytes(16, "big") + new_span_id().to_bytes(8, "big")
        start_ns = int(start_time * 1e9) if start_time is not None else time.time_ns()
        name = f"egress {authority}" if self._egress_name else self._name
        span = ServerSpan(self, ids, parent_span_id, sampled, tracestate, name, start_ns, found)
        span.request_id = request_id
        return span

    def flush(self, timeout: float = 5.0) -> bool:
        return self.pipeline.flush(timeout)


_CONTEXT_HEADERS = frozenset({
    "traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled",
    "x-b3-flags"})
# Read once at the start: sampling, propagation, and the span's user agent and request id.
_TRACING_HEADERS = _CONTEXT_HEADERS | {"x-request-id", "x-client-trace-id",
                                       "x-envoy-force-trace", "user-agent"}
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
_TRACED_REASONS = frozenset("9ab")  # UUIDRequestIDExtension's marks at index 14 of a UUID
_SAMPLED, _SERVICE_FORCED, _CLIENT_FORCED, _NOT_TRACEABLE = "9", "a", "b", "4"


def _request_id_value(request_id: str | None) -> int | None:
    """UUIDRequestIDExtension::getInteger: the first 8 characters read as hexadecimal."""
    if request_id is None or len(request_id) < 8:
        return None
    head = request_id[:8]
    if not head.isalnum():  # int() would also take "+", "_" and spaces
        return None
    try:
        return int(head, 16)
    except ValueError:
        return None


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
