"""W3C Trace Context and B3 extraction/injection (sans-I/O)."""

from __future__ import annotations

from proxy.observability.request_info import HeaderMap
from proxy.observability.tracing.propagation import (
    TraceContext,
    extract,
    inject,
    parse_traceparent,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_w3c_example_from_the_spec() -> None:
    context = parse_traceparent(f"00-{TRACE}-{SPAN}-01", "congo=t61rcWkgMzE")
    assert context == TraceContext(int(TRACE, 16), int(SPAN, 16), True, "congo=t61rcWkgMzE")
    assert context.traceparent() == f"00-{TRACE}-{SPAN}-01"


def test_w3c_invalid_forms_are_ignored() -> None:
    for bad in (f"ff-{TRACE}-{SPAN}-01", f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01",
                f"00-{TRACE.upper()}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01-extra", "garbage",
                f"00-{TRACE}-{SPAN}-1"):
        assert parse_traceparent(bad) is None, bad


def test_w3c_future_version_reads_first_four_fields() -> None:
    context = parse_traceparent(f"cc-{TRACE}-{SPAN}-00-whatever")
    assert context is not None and not context.sampled


def test_b3_single_and_multi_headers() -> None:
    parent, sampled = extract(HeaderMap([("b3", f"{TRACE}-{SPAN}-1")]))
    assert parent is not None and parent.trace_id_hex == TRACE and sampled is True
    parent, sampled = extract(HeaderMap([("X-B3-TraceId", "a3ce929d0e0e4736"),
                                         ("X-B3-SpanId", SPAN), ("X-B3-Sampled", "0")]))
    assert parent is not None and parent.trace_id_hex == "0" * 16 + "a3ce929d0e0e4736"
    assert sampled is False
    assert extract(HeaderMap([("b3", "0")])) == (None, False)
    assert extract(HeaderMap([("x-b3-flags", "1")])) == (None, True)


def test_w3c_wins_over_b3_and_invalid_w3c_falls_back() -> None:
    headers = HeaderMap([("traceparent", f"00-{TRACE}-{SPAN}-01"), ("b3", f"{'1' * 32}-{SPAN}")])
    parent, _ = extract(headers)
    assert parent is not None and parent.trace_id_hex == TRACE
    parent, _ = extract(HeaderMap([("traceparent", "bad"), ("b3", f"{'1' * 32}-{SPAN}-1")]))
    assert parent is not None and parent.trace_id_hex == "1" * 32


def test_inject_writes_traceparent_and_tracestate() -> None:
    context = TraceContext(1, 2, False, "a=b")
    assert inject(context) == [("traceparent", f"00-{1:032x}-{2:016x}-00"), ("tracestate", "a=b")]
    assert inject(TraceContext(1, 2, True)) == [("traceparent", f"00-{1:032x}-{2:016x}-01")]
