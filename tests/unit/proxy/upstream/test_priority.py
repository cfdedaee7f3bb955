"""Envoy's priority-level load math: the tables in the Envoy docs (load_balancing/priority,
panic_threshold) and the degraded example from LoadBalancerBase."""

from __future__ import annotations

import pytest

from proxy.upstream.priority import PriorityCounts, compute_load, in_panic


def _levels(*healthy_percent: int) -> list[PriorityCounts]:
    return [PriorityCounts(total=100, healthy=h) for h in healthy_percent]


@pytest.mark.parametrize(("p0", "p1", "expected"), [
    (100, 100, (100, 0)),
    (72, 100, (100, 0)),
    (71, 100, (99, 1)),
    (50, 100, (70, 30)),
    (25, 100, (35, 65)),
    (0, 100, (0, 100)),
])
def test_two_priorities_match_envoy_docs_table(p0: int, p1: int,
                                               expected: tuple[int, int]) -> None:
    assert compute_load(_levels(p0, p1)).healthy == expected


@pytest.mark.parametrize(("health", "expected"), [
    ((100, 100, 100), (100, 0, 0)),
    ((72, 72, 100), (100, 0, 0)),
    ((71, 71, 100), (99, 1, 0)),
    ((50, 50, 100), (70, 30, 0)),
    ((25, 100, 100), (35, 65, 0)),
    ((25, 25, 100), (35, 35, 30)),
    ((0, 0, 100), (0, 0, 100)),
])
def test_three_priorities_match_envoy_docs_table(health: tuple[int, int, int],
                                                 expected: tuple[int, int, int]) -> None:
    assert compute_load(_levels(*health)).healthy == expected


def test_degraded_hosts_take_load_left_after_healthy_ones() -> None:
    # LoadBalancerBase comment: health 10/20/10 and degraded 20/10/0 (factor 100 here) give
    # 16/28/14 to healthy hosts and 28/14/0 to degraded hosts.
    levels = [PriorityCounts(100, 10, 20), PriorityCounts(100, 20, 10), PriorityCounts(100, 10, 0)]
    load = compute_load(levels, overprovisioning_factor=100, panic_threshold=0)
    assert load.healthy == (16, 28, 14)
    assert load.degraded == (28, 14, 0)


def test_panic_below_threshold_and_disabled_at_zero() -> None:
    assert in_panic(PriorityCounts(10, 4), 50.0)
    assert not in_panic(PriorityCounts(10, 5), 50.0)
    assert not in_panic(PriorityCounts(10, 0), 0.0)


def test_no_panic_while_other_priorities_make_up_full_availability() -> None:
    load = compute_load([PriorityCounts(3, 1), PriorityCounts(2, 2)])  # 33% healthy P0
    assert load.panic == (False, False)
    assert load.healthy == (46, 54)


def test_every_priority_in_panic_spreads_by_host_count() -> None:
    # P0 25% and P1 40% healthy: availability 35 + 56 < 100 and both below the threshold.
    load = compute_load([PriorityCounts(4, 1), PriorityCounts(5, 2)])
    assert load.panic == (True, True) and load.total_panic
    assert load.healthy == (45, 55)  # 100 * 4 / 9 = 44 (+1 rounding to P0), 100 * 5 / 9 = 55


def test_one_priority_in_panic_keeps_the_availability_split() -> None:
    # P0 25% healthy (panic), P1 60% (no panic): 35 + 84 -> capped 100, so nobody panics.
    assert compute_load([PriorityCounts(4, 1), PriorityCounts(5, 3)]).panic == (False, False)
    # P0 20% (panic), P1 50% (no panic): 28 + 70 = 98 < 100 -> only P0 panics.
    load = compute_load([PriorityCounts(5, 1), PriorityCounts(2, 1)])
    assert load.panic == (True, False) and not load.total_panic
    assert load.healthy == (29, 71)


def test_total_panic_spreads_by_host_count() -> None:
    load = compute_load([PriorityCounts(3, 0), PriorityCounts(1, 0)])
    assert load.total_panic
    assert load.healthy == (75, 25)
    assert load.panic == (True, True)


def test_no_healthy_hosts_and_panic_disabled_gives_no_load() -> None:
    load = compute_load([PriorityCounts(3, 0)], panic_threshold=0)
    assert sum(load.healthy) == 0 and not load.total_panic


def test_choose_walks_cumulative_load() -> None:
    load = compute_load(_levels(50, 100))  # 70 / 30
    assert load.choose(0) == (0, False)
    assert load.choose(69) == (0, False)
    assert load.choose(70) == (1, False)
    assert load.choose(99) == (1, False)
