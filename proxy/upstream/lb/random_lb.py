"""RANDOM: a uniformly random available host (Envoy's random LB does not use weights)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from proxy.upstream.host import Host
from proxy.upstream.lb.base import LbContext, pick_with_retries


class RandomPicker:
    def __init__(self, hosts: Sequence[Host], rng: random.Random) -> None:
        self.hosts = tuple(hosts)
        self._rng = rng

    def pick(self, context: LbContext) -> Host | None:
        if not self.hosts:
            return None
        return pick_with_retries(
            lambda _attempt: self.hosts[self._rng.randrange(len(self.hosts))], context)
