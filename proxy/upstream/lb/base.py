"""What every load balancer shares: the caller's context and the picker interface.

A picker is built over one fixed tuple of hosts (one priority's healthy, degraded or, in panic,
all hosts) and chooses among them; the cluster runtime rebuilds pickers when the host set or
health changes, as Envoy rebuilds its per-priority schedulers and rings. Pickers are plain
synchronous objects with an injected `random.Random`, so tests are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import xxhash

from proxy.upstream.host import Host


@dataclass(slots=True)
class LbContext:
    """What the caller tells the load balancer about one pick.

    `hash_key`: a 64-bit hash for RING_HASH/MAGLEV (Envoy's `computeHashKey()`); tcp_proxy
    computes it from the source IP, the HTTP router from its hash policies, both with
    `hash_of(...)`. None: consistent-hash policies fall back to a random pick, like Envoy.
    `excluded`: hosts the router already tried on this request (retry predicate
    `previous_hosts`). As in Envoy, a pick that lands on an excluded host is re-attempted up to
    `host_selection_retry_max_attempts` times (retry policy field, Envoy default 1), and the
    last pick is used if all land on excluded hosts. Re-attempts follow Envoy's per-policy
    rules (round robin/least request/random pick again; ring hash steps `attempt` entries
    along the ring; maglev xors the hash with `~0 - attempt + 1`).
    """

    hash_key: int | None = None
    excluded: Collection[Host] = field(default_factory=frozenset)
    host_selection_retry_max_attempts: int = 1

    def allows(self, host: Host) -> bool:
        return host not in self.excluded

    @property
    def attempts(self) -> int:
        return 1 + self.host_selection_retry_max_attempts if self.excluded else 1


def hash_of(data: bytes | str, seed: int = 0) -> int:
    """xxHash64, the hash Envoy uses for hash policies, ring hash and maglev."""
    if isinstance(data, str):
        data = data.encode()
    return int(xxhash.xxh64_intdigest(data, seed))


class Picker(Protocol):
    def pick(self, context: LbContext) -> Host | None:
        """One host from this picker's hosts, honouring `context`; None if it has none."""


PickerFactory = Callable[[Sequence[Host], random.Random], Picker]


def pick_with_retries(pick_once: Callable[[int], Host | None],
                      context: LbContext) -> Host | None:
    """Envoy's host-selection loop: `pick_once(attempt)` until a host `context` allows, at
    most `context.attempts` times; the last pick otherwise."""
    host: Host | None = None
    for attempt in range(context.attempts):
        host = pick_once(attempt)
        if host is None or context.allows(host):
            return host
    return host


def host_hash_key(host: Host, use_hostname: bool) -> str:
    """The string Envoy hashes for a host on the ring/table: hostname or `ip:port`."""
    if use_hostname and host.hostname:
        return host.hostname
    if ":" in host.address:  # IPv6, as Envoy prints it
        return f"[{host.address}]:{host.port}"
    return f"{host.address}:{host.port}"
