"""RING_HASH: Envoy's ketama-style consistent hash ring (load_balancing/load_balancers#ring-hash).

Each host gets `scale * normalized_weight` points on a 64-bit ring, where `scale` makes the
lightest host get a whole number of points and at least `minimum_ring_size` points exist in
total, capped at `maximum_ring_size` (source/extensions/load_balancing_policies/ring_hash).
A point's hash is xxHash64 of "<host key>_<i>" (host key `ip:port`, or the hostname with
`use_hostname_for_hashing`). A request's hash key maps to the first point at or after it,
wrapping to the start. Removing a host moves only the keys that mapped to its points.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence

from proxy.upstream.host import Host
from proxy.upstream.lb.base import LbContext, hash_of, host_hash_key, pick_with_retries


class RingHashPicker:
    def __init__(self, hosts: Sequence[Host], rng: random.Random, *,
                 minimum_ring_size: int = 1024, maximum_ring_size: int = 8 * 1024 * 1024,
                 use_hostname_for_hashing: bool = False) -> None:
        self.hosts = tuple(hosts)
        self._rng = rng
        points = build_ring(self.hosts, minimum_ring_size, maximum_ring_size,
                            use_hostname_for_hashing)
        self._hashes = [point for point, _ in points]
        self._ring_hosts = [host for _, host in points]

    @property
    def size(self) -> int:
        return len(self._hashes)

    def pick(self, context: LbContext) -> Host | None:
        if not self._hashes:
            return None
        key = context.hash_key if context.hash_key is not None else self._rng.getrandbits(64)
        index = bisect.bisect_left(self._hashes, key % 2**64)
        if index == len(self._hashes):
            index = 0
        # Envoy: a re-attempt behaves "as if this host was not in the ring": `attempt` entries
        # further along (which may still be the same host).
        return pick_with_retries(
            lambda attempt: self._ring_hosts[(index + attempt) % len(self._hashes)], context)


def build_ring(hosts: Sequence[Host], minimum: int, maximum: int,
               use_hostname: bool) -> list[tuple[int, Host]]:
    """The sorted (hash, host) points of the ring, as Envoy's `Ring::Ring` builds them."""
    total_weight = sum(host.weight for host in hosts)
    if not hosts or total_weight == 0:
        return []
    normalized = [(host, host.weight / total_weight) for host in hosts]
    min_weight = min(weight for _, weight in normalized)
    scale = min(math.ceil(min_weight * minimum) / min_weight, float(maximum))
    points: list[tuple[int, Host]] = []
    current = 0.0
    target = 0.0
    for host, weight in normalized:
        prefix = host_hash_key(host, use_hostname) + "_"
        target += scale * weight
        index = 0
        while current < target:
            points.append((hash_of(f"{prefix}{index}"), host))
            index += 1
            current += 1
    points.sort(key=lambda point: point[0])
    return points
