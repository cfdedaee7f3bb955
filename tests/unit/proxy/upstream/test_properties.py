"""Hypothesis properties of the load-balancing math (no sockets, no time)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.model.health import OutlierDetection
from proxy.stats import Stats
from proxy.upstream.health.outlier import OutlierDetector
from proxy.upstream.lb.base import LbContext
from proxy.upstream.lb.maglev import build_table
from proxy.upstream.lb.ring_hash import RingHashPicker
from proxy.upstream.priority import PriorityCounts, compute_load
from tests.unit.proxy.upstream.builders import hosts


@st.composite
def _levels(draw: st.DrawFn) -> list[PriorityCounts]:
    levels = []
    for _ in range(draw(st.integers(1, 4))):
        total = draw(st.integers(0, 12))
        healthy = draw(st.integers(0, total))
        degraded = draw(st.integers(0, total - healthy))
        levels.append(PriorityCounts(total, healthy, degraded))
    return levels


@given(_levels(), st.integers(100, 200), st.sampled_from([0.0, 50.0, 100.0]))
def test_priority_load_always_sums_to_100_or_0(levels: list[PriorityCounts], factor: int,
                                                panic: float) -> None:
    load = compute_load(levels, factor, panic)
    total = sum(load.healthy) + sum(load.degraded)
    assert total in (0, 100)
    assert all(value >= 0 for value in (*load.healthy, *load.degraded))
    # Load only goes where there are hosts.
    for level, healthy, degraded in zip(levels, load.healthy, load.degraded, strict=True):
        if level.total == 0:
            assert healthy == degraded == 0
    if total == 0:
        assert panic == 0 or sum(level.total for level in levels) == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=2, max_size=6), st.integers(0, 2**64 - 1))
def test_ring_hash_same_key_same_host_and_survivors_take_over(
        weights: list[int], key: int) -> None:
    group = hosts(len(weights), weights=tuple(weights))
    ring = RingHashPicker(group, random.Random(1), minimum_ring_size=256)
    chosen = ring.pick(LbContext(hash_key=key))
    assert chosen in group
    assert ring.pick(LbContext(hash_key=key)) is chosen  # same key, same host
    survivors = [host for host in group if host is not chosen]
    after = RingHashPicker(survivors, random.Random(1), minimum_ring_size=256)
    assert after.pick(LbContext(hash_key=key)) in survivors


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=5))
def test_maglev_table_shares_follow_weights(weights: list[int]) -> None:
    group = hosts(len(weights), weights=tuple(weights))
    table = build_table(group, 1009, False)
    assert len(table) == 1009
    total = sum(weights)
    for host, weight in zip(group, weights, strict=True):
        share = table.count(host) / 1009
        assert abs(share - weight / total) < 0.02


@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from([200, 500, 502, 503])),
                max_size=200),
       st.integers(0, 100))
def test_outlier_never_exceeds_max_ejection_percent_beyond_one_host(
        events: list[tuple[int, int]], max_percent: int) -> None:
    detector = OutlierDetector(
        OutlierDetection(consecutive_5xx=2, max_ejection_percent=max_percent,
                         enforcing_consecutive_gateway_failure=100),
        lambda host, ejected: None, random.Random(1), Stats(), "cluster.c.")
    group = hosts(10)
    detector.set_host_count(10)
    for index, status in events:
        detector.report_http_status(group[index], status, 0.0)
    ejected = detector.ejections_active
    assert ejected <= max(1, -(-max_percent * 10 // 100))
    assert ejected == sum(1 for m in detector.monitors.values() if m.ejected)
