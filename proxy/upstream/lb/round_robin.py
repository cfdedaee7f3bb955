"""ROUND_ROBIN: plain rotation when weights are equal, Envoy's EDF scheduler when they differ.

Envoy (source/common/upstream/load_balancer_impl.cc, edf_scheduler.h): with equal weights hosts
are taken in turn; with different weights each host is an entry with deadline
`now + 1 / weight` in an earliest-deadline-first queue, so a host of weight 3 is picked three
times as often as one of weight 1, interleaved rather than in bursts. Both start at a random
offset so that many proxies do not march in step.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from typing import Generic, TypeVar

from proxy.upstream.host import Host
from proxy.upstream.lb.base import LbContext, pick_with_retries

T = TypeVar("T")


class EdfScheduler(Generic[T]):
    """Earliest deadline first over (item, weight); ties go to the earlier-added entry."""

    def __init__(self, entries: Sequence[tuple[T, float]]) -> None:
        self._now = 0.0
        self._order = 0
        self._heap: list[tuple[float, int, T, float]] = []
        for item, weight in entries:
            self.add(item, weight)

    def add(self, item: T, weight: float) -> None:
        self._order += 1
        heapq.heappush(self._heap, (self._now + 1.0 / weight, self._order, item, weight))

    def pick_and_readd(self) -> T:
        deadline, _, item, weight = heapq.heappop(self._heap)
        self._now = deadline
        self.add(item, weight)
        return item

    def pop(self) -> tuple[T, float]:
        deadline, _, item, weight = heapq.heappop(self._heap)
        self._now = deadline
        return item, weight


class RoundRobinPicker:
    def __init__(self, hosts: Sequence[Host], rng: random.Random) -> None:
        self.hosts = tuple(hosts)
        self.weighted = len({host.weight for host in self.hosts}) > 1
        self._index = rng.randrange(len(self.hosts)) if self.hosts else 0
        self._scheduler = (EdfScheduler[Host]([(h, float(h.weight)) for h in self.hosts])
                           if self.weighted else None)
        if self._scheduler is not None:
            for _ in range(rng.randrange(len(self.hosts))):
                self._scheduler.pick_and_readd()

    def pick(self, context: LbContext) -> Host | None:
        if not self.hosts:
            return None
        return pick_with_retries(self._next, context)

    def _next(self, attempt: int = 0) -> Host:
        if self._scheduler is not None:
            return self._scheduler.pick_and_readd()
        host = self.hosts[self._index % len(self.hosts)]
        self._index += 1
        return host
