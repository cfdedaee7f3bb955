"""MAGLEV: Envoy's Maglev lookup table (load_balancing/load_balancers#maglev, the Maglev paper).

The table has a prime number of slots (default 65537). Each host has a permutation of the slots
given by offset = xxHash64(key, seed 0) % M and skip = xxHash64(key, seed 1) % (M - 1) + 1; hosts
take turns claiming their next free slot, a host of weight w taking a turn w / max_weight as
often (Envoy's weighted variant). A hash key maps to slot `hash % M`. Removing a host moves
about 1/N of the keys, plus a small amount of churn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from proxy.upstream.host import Host
from proxy.upstream.lb.base import LbContext, hash_of, host_hash_key, pick_with_retries

_MASK = 2**64 - 1


class MaglevPicker:
    def __init__(self, hosts: Sequence[Host], rng: random.Random, *, table_size: int = 65537,
                 use_hostname_for_hashing: bool = False) -> None:
        self.hosts = tuple(hosts)
        self._rng = rng
        self.table = build_table(self.hosts, table_size, use_hostname_for_hashing)

    def pick(self, context: LbContext) -> Host | None:
        if not self.table:
            return None
        key = context.hash_key if context.hash_key is not None else self._rng.getrandbits(64)
        size = len(self.table)
        return pick_with_retries(lambda attempt: self.table[_mutate(key, attempt) % size],
                                 context)


def _mutate(key: int, attempt: int) -> int:
    """Envoy `MaglevTable::chooseHost`: a re-attempt xors the hash with `~0 - attempt + 1`,
    a value with most bits set, to land far from the first choice."""
    key &= _MASK
    return key if attempt == 0 else key ^ ((_MASK - attempt + 1) & _MASK)


def build_table(hosts: Sequence[Host], size: int, use_hostname: bool) -> list[Host]:
    """The filled lookup table (list of `size` hosts), empty when there are no hosts."""
    live = [host for host in hosts if host.weight > 0]
    if not live:
        return []
    # Sorting by key makes the table independent of the order hosts arrived in.
    entries = sorted(((host_hash_key(h, use_hostname), h) for h in live), key=lambda e: e[0])
    total = sum(host.weight for _, host in entries)
    weights = [host.weight / total for _, host in entries]
    max_weight = max(weights)
    offsets = [hash_of(key, 0) % size for key, _ in entries]
    skips = [hash_of(key, 1) % (size - 1) + 1 for key, _ in entries]
    nexts = [0] * len(entries)
    targets = [0.0] * len(entries)
    table: list[Host | None] = [None] * size
    filled = 0
    iteration = 1
    while filled < size:
        for i, (_, host) in enumerate(entries):
            if filled >= size:
                break
            # A host of weight max_weight claims a slot every iteration; one of weight
            # max_weight / 3 every third iteration.
            if iteration * weights[i] < targets[i]:
                continue
            targets[i] += max_weight
            slot = (offsets[i] + skips[i] * nexts[i]) % size
            while table[slot] is not None:
                nexts[i] += 1
                slot = (offsets[i] + skips[i] * nexts[i]) % size
            table[slot] = host
            nexts[i] += 1
            filled += 1
        iteration += 1
    return [host for host in table if host is not None]
