"""The demo's own judgement (examples/demo): the live view's numbers from a sidecar's
/stats/prometheus text, and the checks `make demo DURATION=30` exits by. The demo itself runs
in CI (.ci/run: make demo DURATION=30)."""

from __future__ import annotations

from typing import Any

from examples.demo.mesh import quantile, read_inbound
from examples.demo.run import canary_failures, whole_traces
from proxy.observability.prometheus import render
from proxy.stats import Stats


def test_the_view_reads_inbound_numbers_and_quantiles() -> None:
    stats = Stats()
    for ms in [3.0] * 90 + [40.0] * 10:
        stats.histogram("http.inbound|8080.downstream_rq_time").record(ms)
        stats.histogram("http.outbound|9090.downstream_rq_time").record(9999.0)
    stats.counter("http.inbound|8080.downstream_rq_total").inc(100)
    stats.counter("http.inbound|8080.downstream_rq_5xx").inc(4)
    stats.counter("http.outbound|9090.downstream_rq_total").inc(7)
    inbound = read_inbound(render(stats))
    assert (inbound.total, inbound.errors) == (100, 4)
    p50 = quantile(0.5, (), inbound.buckets)
    p99 = quantile(0.99, (), inbound.buckets)
    assert p50 is not None and 1 < p50 <= 5  # in the (1, 5] bucket
    assert p99 is not None and 25 < p99 <= 50
    assert quantile(0.5, inbound.buckets, inbound.buckets) is None  # nothing new


def test_the_canary_check() -> None:
    assert canary_failures({"api-v1": 90, "api-v2": 10}, 90, 10) == []
    assert canary_failures({"api-v1": 50, "api-v2": 50}, 90, 10) != []
    assert canary_failures({"api-v2": 100}, 0, 100) == []
    assert canary_failures({"api-v2": 3}, 0, 100) != []  # too few to tell


def _span(trace: str, span: str, parent: str | None, cluster: str) -> dict[str, Any]:
    return {"context": {"trace_id": trace, "span_id": span}, "parent_id": parent,
            "name": "ingress", "start_time": span, "attributes": {"upstream_cluster": cluster}}


def test_a_whole_trace_has_every_hop() -> None:
    hops = [("a", None, "inbound|8000"), ("b", "a", "outbound|8080||api-v2.default"),
            ("c", "b", "inbound|8080"), ("d", "a", "outbound|9090||inventory.default"),
            ("e", "d", "inbound|9090")]
    whole = [_span("t1", span, parent, cluster) for span, parent, cluster in hops]
    partial = [_span("t2", span, parent, cluster) for span, parent, cluster in hops[:3]]
    assert [group[0]["context"]["trace_id"] for group in whole_traces(whole + partial)] == ["t1"]
