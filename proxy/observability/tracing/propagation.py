"""Trace-context headers, sans-I/O: W3C Trace Context extracted and injected, B3 accepted.

W3C: https://www.w3.org/TR/trace-context/ (`traceparent: 00-<trace-id>-<parent-id>-<flags>`,
`tracestate` passed through). B3: https://github.com/openzipkin/b3-propagation (single `b3`
header and the `X-B3-*` headers; 64-bit trace ids are left-padded to 128 bits). Envoy's
OpenTelemetry tracer reads and writes W3C; we also read B3 so meshes migrating from Zipkin
keep one trace.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from proxy.observability.request_info import HeaderAccessor

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: int
    span_id: int
    sampled: bool
    tracestate: str = ""

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    def traceparent(self) -> str:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{'01' if self.sampled else '00'}"


def new_trace_id() -> int:
    return random.getrandbits(128) or 1


def new_span_id() -> int:
    return random.getrandbits(64) or 1


def _hex_id(text: str, length: int) -> int | None:
    if len(text) != length or not set(text) <= _HEX:
        return None
    value = int(text, 16)
    return value or None  # all-zero ids are invalid in both W3C and B3


def parse_traceparent(value: str, tracestate: str = "") -> TraceContext | None:
    """W3C section 3.2: version 00 has exactly four fields; version ff is invalid; later
    versions are read by their first four fields. Upper-case hex is invalid."""
    parts = value.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or not set(parts[0]) <= _HEX or parts[0] == "ff":
        return None
    if parts[0] == "00" and len(parts) != 4:
        return None
    trace_id = _hex_id(parts[1], 32)
    span_id = _hex_id(parts[2], 16)
    if trace_id is None or span_id is None or len(parts[3]) != 2 or not set(parts[3]) <= _HEX:
        return None
    sampled = bool(int(parts[3], 16) & 0x01)
    return TraceContext(trace_id, span_id, sampled, tracestate.strip())


def _b3_trace_id(text: str) -> int | None:
    text = text.lower()
    return _hex_id(text.rjust(32, "0"), 32) if len(text) in (16, 32) else None


def _b3_sampled(flag: str | None) -> bool | None:
    if flag is None:
        return None
    lowered = flag.strip().lower()
    if lowered in ("1", "d", "true"):
        return True
    if lowered in ("0", "false"):
        return False
    return None


def parse_b3_single(value: str) -> tuple[TraceContext | None, bool | None]:
    """`b3: {trace}-{span}[-{sampling}[-{parent}]]`, or just `b3: {sampling}`."""
    parts = value.strip().split("-")
    if len(parts) == 1:
        return None, _b3_sampled(parts[0])
    trace_id = _b3_trace_id(parts[0])
    span_id = _hex_id(parts[1].lower(), 16)
    if trace_id is None or span_id is None:
        return None, None
    sampled = _b3_sampled(parts[2]) if len(parts) > 2 else None
    return TraceContext(trace_id, span_id, bool(sampled)), sampled


def extract(headers: HeaderAccessor) -> tuple[TraceContext | None, bool | None]:
    """(parent context or None, explicit sampling decision or None). W3C wins over B3."""
    traceparent = headers.get("traceparent")
    if traceparent is not None:
        parent = parse_traceparent(traceparent, headers.get("tracestate") or "")
        if parent is not None:
            return parent, parent.sampled
    single = headers.get("b3")
    if single is not None:
        parent, sampled = parse_b3_single(single)
        if parent is not None or sampled is not None:
            return parent, sampled
    return _extract_b3_multi(headers)


def _extract_b3_multi(headers: HeaderAccessor) -> tuple[TraceContext | None, bool | None]:
    sampled = _b3_sampled(headers.get("x-b3-sampled"))
    if (headers.get("x-b3-flags") or "").strip() == "1":
        sampled = True  # debug implies accept
    trace_text, span_text = headers.get("x-b3-traceid"), headers.get("x-b3-spanid")
    if trace_text is None or span_text is None:
        return None, sampled
    trace_id = _b3_trace_id(trace_text.strip())
    span_id = _hex_id(span_text.strip().lower(), 16)
    if trace_id is None or span_id is None:
        return None, sampled
    return TraceContext(trace_id, span_id, bool(sampled)), sampled


def inject(context: TraceContext) -> list[tuple[str, str]]:
    """The headers to send upstream for a request made inside `context`."""
    headers = [("traceparent", context.traceparent())]
    if context.tracestate:
        headers.append(("tracestate", context.tracestate))
    return headers


# Header names the proxy replaces on the upstream request (B3 headers are left as they came).
PROPAGATION_HEADERS = ("traceparent", "tracestate")
