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


@dataclass
class LbContext:
    """What the caller tells the load balancer about one pick.

    `hash_key`: a 64-bit hash for RING_HASH/MAGLEV (Envoy's `computeHashKey()`); tcp_proxy
    computes it from the source IP, the HTTP router from its hash policies, both with
    `hash_of(...)`. None: consistent-hash policies fall back to a random pick, like Envoy.
    `excluded`: hosts the router already tried on this request (retry `previous_hosts`); the
    balancer avoids them while other hosts remain, and picks among them only if nothing else is
    available.
    """

    hash_key: int | None = None
    excluded: Collection[Host] = field(default_factory=frozenset)

    def allows(self, host: Host) -> bool:
        return host not in self.excluded


def hash_of(data: bytes | str, seed: int = 0) -> int:
    """xxHash64, the hash Envoy uses for hash policies, ring hash and maglev."""
    if isinstance(data, str):
        data = data.encode()
    return int(xxhash.xxh64_intdigest(data, seed))


class Picker(Protocol):
    def pick(self, context: LbContext) -> Host | None:
        """One host from this picker's hosts, honouring `context`; None if it has none."""


PickerFactory = Callable[[Sequence[Host], random.Random], Picker]


def filter_excluded(hosts: Sequence[Host], context: LbContext) -> Sequence[Host]:
    """The hosts not excluded by `context`, or all of them if that leaves none."""
    if not context.excluded:
        return hosts
    remaining = [host for host in hosts if context.allows(host)]
    return remaining or hosts


def host_hash_key(host: Host, use_hostname: bool) -> str:
    """The string Envoy hashes for a host on the ring/table: hostname or `ip:port`."""
    if use_hostname and host.hostname:
        return host.hostname
    if ":" in host.address:  # IPv6, as Envoy prints it
        return f"[{host.address}]:{host.port}"
    return f"{host.address}:{host.port}"
