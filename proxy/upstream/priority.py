"""Envoy's priority-level load math, as pure functions (no hosts, just counts).

From the Envoy docs (intro/arch_overview/upstream/load_balancing/priority, .../panic_threshold)
and `LoadBalancerBase::recalculatePerPriorityState`:

- a priority's health is `min(100, overprovisioning_factor * healthy / total)` (factor in
  percent, default 140: a priority keeps all its load until fewer than 1/1.4 = ~71% of its hosts
  are healthy); degraded availability is computed the same way from degraded hosts;
- the normalized total availability is `min(100, sum(health + degraded))`;
- load is handed out in priority order, each level taking `min(remaining, health * 100 /
  normalized_total)`, first for healthy hosts and then with what is left for degraded hosts;
  rounding leftovers go to the first priority with healthy (else degraded) hosts;
- a priority is in panic when `100 * (healthy + degraded) / total < panic_threshold` *and* the
  normalized total availability is below 100 (`recalculatePerPriorityPanic`: while other
  priorities can absorb the load, none panics); in panic it balances across all its hosts;
- if every priority is in panic (always so when nothing is available anywhere) load is spread
  across priorities in proportion to their host counts instead (Envoy
  `recalculateLoadInTotalPanic`); checked against real Envoy in
  tests/conformance/proxy/upstream/test_hash_differential.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PriorityCounts:
    total: int
    healthy: int
    degraded: int = 0


@dataclass(frozen=True)
class PriorityLoad:
    healthy: tuple[int, ...]  # percent of traffic to each priority's healthy hosts
    degraded: tuple[int, ...]  # percent of traffic to each priority's degraded hosts
    panic: tuple[bool, ...]  # per priority: balance across all hosts
    total_panic: bool = False

    def choose(self, bucket: int) -> tuple[int, bool]:
        """(priority, use_degraded) for `bucket` in 0..99, walking cumulative load."""
        cumulative = 0
        for priority, load in enumerate(self.healthy):
            cumulative += load
            if bucket < cumulative:
                return priority, False
        for priority, load in enumerate(self.degraded):
            cumulative += load
            if bucket < cumulative:
                return priority, True
        return 0, False


def availability(counts: PriorityCounts, overprovisioning_factor: int) -> tuple[int, int]:
    """(healthy, degraded) availability of one priority, in percent, each capped at 100."""
    if counts.total == 0:
        return 0, 0
    healthy = min(100, overprovisioning_factor * counts.healthy // counts.total)
    degraded = min(100, overprovisioning_factor * counts.degraded // counts.total)
    return healthy, degraded


def in_panic(counts: PriorityCounts, panic_threshold: float) -> bool:
    """Envoy `isHostSetInPanic`: healthy + degraded percent below the threshold."""
    if panic_threshold <= 0:
        return False
    if counts.total == 0:
        return True
    healthy_percent = 100.0 * counts.healthy / counts.total
    degraded_percent = 100.0 * counts.degraded / counts.total
    return healthy_percent + degraded_percent < panic_threshold


def compute_load(levels: Sequence[PriorityCounts], overprovisioning_factor: int = 140,
                 panic_threshold: float = 50.0) -> PriorityLoad:
    """The per-priority healthy/degraded load and panic flags for these host counts."""
    if not levels:
        return PriorityLoad((), (), ())
    health = [availability(level, overprovisioning_factor) for level in levels]
    healthy_avail = [h for h, _ in health]
    degraded_avail = [d for _, d in health]
    normalized_total = min(100, sum(healthy_avail) + sum(degraded_avail))
    panic = tuple(normalized_total < 100 and in_panic(level, panic_threshold)
                  for level in levels)
    if normalized_total == 0 or all(panic):
        return _total_panic(levels, panic_threshold)
    healthy_load, first_healthy, remaining = _distribute(healthy_avail, 100, normalized_total)
    degraded_load, first_degraded, remaining = _distribute(degraded_avail, remaining,
                                                           normalized_total)
    if remaining:
        if first_healthy >= 0:
            healthy_load[first_healthy] += remaining
        elif first_degraded >= 0:
            degraded_load[first_degraded] += remaining
    return PriorityLoad(tuple(healthy_load), tuple(degraded_load), panic)


def _distribute(avail: Sequence[int], total_load: int,
                normalized_total: int) -> tuple[list[int], int, int]:
    """Envoy `distributeLoad`: (loads, first available priority or -1, load left over)."""
    loads = []
    first = -1
    for priority, value in enumerate(avail):
        if first < 0 and value > 0:
            first = priority
        load = min(total_load, value * 100 // normalized_total)
        loads.append(load)
        total_load -= load
    return loads, first, total_load


def _total_panic(levels: Sequence[PriorityCounts], panic_threshold: float) -> PriorityLoad:
    """Every priority panics: spread load by host count, balancing over all hosts."""
    total_hosts = sum(level.total for level in levels)
    zeros = tuple(0 for _ in levels)
    if panic_threshold <= 0 or total_hosts == 0:
        # Panic disabled (or no hosts at all): no host will be chosen.
        return PriorityLoad(zeros, zeros, tuple(False for _ in levels), total_panic=False)
    loads = [100 * level.total // total_hosts for level in levels]
    first = next(index for index, level in enumerate(levels) if level.total)
    loads[first] += 100 - sum(loads)
    return PriorityLoad(tuple(loads), zeros, tuple(True for _ in levels), total_panic=True)
