"""LEAST_REQUEST, as Envoy does it (arch_overview/upstream/load_balancing/load_balancers):

- all weights equal: "power of N choices": pick `choice_count` hosts at random (with
  replacement) and take the one with the fewest active requests (the first seen on ties);
- weights differ: weighted round robin (EDF) where each host's effective weight is
  `weight / (active_requests + 1) ** active_request_bias`, recomputed whenever the host is
  picked; bias 0 gives plain weighted round robin.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from proxy.upstream.host import Host
from proxy.upstream.lb.base import LbContext, pick_with_retries
from proxy.upstream.lb.round_robin import EdfScheduler


class LeastRequestPicker:
    def __init__(self, hosts: Sequence[Host], rng: random.Random, *, choice_count: int = 2,
                 active_request_bias: float = 1.0) -> None:
        self.hosts = tuple(hosts)
        self.choice_count = choice_count
        self.bias = active_request_bias
        self._rng = rng
        self.weighted = len({host.weight for host in self.hosts}) > 1
        self._scheduler = (EdfScheduler[Host]([(h, self._effective_weight(h))
                                               for h in self.hosts])
                           if self.weighted else None)

    def _effective_weight(self, host: Host) -> float:
        if self.bias == 0:
            return float(host.weight)
        return host.weight / (host.active_requests + 1) ** self.bias

    def pick(self, context: LbContext) -> Host | None:
        if not self.hosts:
            return None
        once = self._pick_weighted if self._scheduler is not None else self._pick_of_n
        return pick_with_retries(once, context)

    def _pick_of_n(self, _attempt: int) -> Host:
        best: Host | None = None
        for _ in range(self.choice_count):
            host = self.hosts[self._rng.randrange(len(self.hosts))]
            if best is None or host.active_requests < best.active_requests:
                best = host
        assert best is not None
        return best

    def _pick_weighted(self, _attempt: int) -> Host:
        assert self._scheduler is not None
        host, _weight = self._scheduler.pop()
        self._scheduler.add(host, self._effective_weight(host))
        return host
