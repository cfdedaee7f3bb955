"""A cluster's hosts grouped by priority, with Envoy's priority load and per-priority pickers.

Synchronous and I/O-free. `update` merges a new endpoint list into the hosts (hosts that stay
keep their state); any health change calls `invalidate`, after which the priority load and the
pickers (one per priority and host subset: healthy, degraded, all-for-panic) are rebuilt lazily
on the next `choose`, as Envoy rebuilds its per-priority LB state on host set changes.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.model.cluster import Cluster, LbPolicy
from proxy.model.endpoint import Endpoint, Locality
from proxy.model.metadata import SocketMetadata
from proxy.upstream.host import Health, HealthFlag, Host
from proxy.upstream.lb.base import LbContext, Picker, PickerFactory
from proxy.upstream.locality import LocalityScheduler, effective_weights
from proxy.upstream.priority import PriorityCounts, PriorityLoad, compute_load


@dataclass(frozen=True)
class ResolvedEndpoint:
    """An endpoint with its address resolved to an IP (DNS clusters), ready to be a Host."""

    endpoint: Endpoint
    address: str
    locality: Locality = field(default_factory=Locality)
    priority: int = 0
    locality_weight: int | None = None
    locality_socket_metadata: SocketMetadata | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.endpoint.port)


class HostSet:
    def __init__(self, config: Cluster, factory: PickerFactory, rng: random.Random) -> None:
        self.config = config
        self._factory = factory
        self._rng = rng
        self._hosts: dict[tuple[str, int], Host] = {}
        self._load: PriorityLoad | None = None
        self._levels: list[dict[str, tuple[Host, ...]]] = []
        self._pickers: dict[tuple[int, str, Locality | None], Picker] = {}
        self._locality_schedulers: dict[tuple[int, str], LocalityScheduler] = {}
        self._factor_override = 0  # from an EDS ClusterLoadAssignment's policy

    def reconfigure(self, config: Cluster, factory: PickerFactory) -> None:
        self.config = config
        self._factory = factory
        self.invalidate()

    def all_hosts(self) -> list[Host]:
        return list(self._hosts.values())

    def get(self, key: tuple[str, int]) -> Host | None:
        return self._hosts.get(key)

    def update(self, endpoints: Iterable[ResolvedEndpoint], *, health_checked: bool,
               keep_healthy_removed: bool = False) -> tuple[list[Host], list[Host]]:
        """Merge a new endpoint list; returns (added, removed) hosts.

        `keep_healthy_removed` (dynamic clusters with active health checks): a host gone from
        discovery but passing its checks stays, flagged PENDING_DYNAMIC_REMOVAL, until it fails
        one (Envoy service discovery docs, "absent + health check OK: route").
        """
        fresh: dict[tuple[str, int], Host] = {}
        added: list[Host] = []
        for resolved in endpoints:
            if resolved.key in fresh:
                continue  # Envoy de-duplicates hosts by address
            host = self._hosts.get(resolved.key)
            if host is None:
                host = self._new_host(resolved, health_checked)
                added.append(host)
            self._refresh(host, resolved)
            host.set_flag(HealthFlag.PENDING_DYNAMIC_REMOVAL, False)
            fresh[resolved.key] = host
        removed = []
        for key, host in self._hosts.items():
            if key in fresh:
                continue
            if keep_healthy_removed and not host.flags & HealthFlag.FAILED_ACTIVE_HC:
                host.set_flag(HealthFlag.PENDING_DYNAMIC_REMOVAL, True)
                fresh[key] = host
            else:
                removed.append(host)
        self._hosts = fresh
        self.invalidate()
        return added, removed

    def drop_failed_pending_removals(self) -> list[Host]:
        """Remove the hosts kept for PENDING_DYNAMIC_REMOVAL that now fail active checks."""
        gone = [host for host in self._hosts.values()
                if host.flags & HealthFlag.PENDING_DYNAMIC_REMOVAL
                and host.flags & HealthFlag.FAILED_ACTIVE_HC]
        for host in gone:
            del self._hosts[host.key]
        if gone:
            self.invalidate()
        return gone

    def _new_host(self, resolved: ResolvedEndpoint, health_checked: bool) -> Host:
        endpoint = resolved.endpoint
        host = Host(address=resolved.address, port=endpoint.port)
        if health_checked and not endpoint.active_health_check_disabled:
            # Envoy: hosts of a health-checked cluster start failed until their first check.
            host.flags |= HealthFlag.FAILED_ACTIVE_HC | HealthFlag.PENDING_ACTIVE_HC
        return host

    @staticmethod
    def _refresh(host: Host, resolved: ResolvedEndpoint) -> None:
        endpoint = resolved.endpoint
        host.weight = endpoint.weight
        host.locality = resolved.locality
        host.locality_weight = resolved.locality_weight
        host.priority = resolved.priority
        host.hostname = endpoint.hostname or (
            endpoint.address if endpoint.address != resolved.address else "")
        host.active_health_check_disabled = endpoint.active_health_check_disabled
        host.health_check_port = endpoint.health_check_port
        host.health_check_hostname = endpoint.health_check_hostname
        host.set_eds_health(endpoint.health_status)
        host.socket_metadata = endpoint.socket_metadata
        host.locality_socket_metadata = resolved.locality_socket_metadata

    def invalidate(self) -> None:
        self._load = None
        self._levels = []
        self._pickers = {}
        self._locality_schedulers = {}

    # -- choosing -----------------------------------------------------------------------------

    def load(self) -> PriorityLoad:
        if self._load is None:
            self._rebuild()
        assert self._load is not None
        return self._load

    def _rebuild(self) -> None:
        count = 1 + max((host.priority for host in self._hosts.values()), default=0)
        levels: list[dict[str, list[Host]]] = [
            {"healthy": [], "degraded": [], "all": []} for _ in range(count)]
        for host in self._hosts.values():
            level = levels[host.priority]
            level["all"].append(host)
            if host.health is Health.HEALTHY:
                level["healthy"].append(host)
            elif host.health is Health.DEGRADED:
                level["degraded"].append(host)
        self._levels = [{kind: tuple(hosts) for kind, hosts in level.items()}
                        for level in levels]
        counts = [PriorityCounts(len(level["all"]), len(level["healthy"]),
                                 len(level["degraded"])) for level in levels]
        factor = self._overprovisioning_factor()
        self._load = compute_load(counts, factor, self.config.healthy_panic_threshold)

    def _overprovisioning_factor(self) -> int:
        assignment = self.config.load_assignment
        return self._factor_override or (assignment.overprovisioning_factor if assignment
                                         else 140)

    def set_overprovisioning_factor(self, factor: int) -> None:
        """EDS carries the factor in its ClusterLoadAssignment policy."""
        self._factor_override = factor
        self.invalidate()

    def choose(self, context: LbContext) -> tuple[Host | None, bool]:
        """(host or None, whether the chosen priority was in panic)."""
        load = self.load()
        if load.healthy[0] == 100 and not self.config.locality_weighted_lb:
            # Priority 0's healthy hosts take every bucket (the usual case): no draw needed.
            panic = load.panic[0]
            picker = self._pickers.get((0, "all" if panic else "healthy", None))
            if picker is None:
                picker = self._picker(0, "all" if panic else "healthy", None)
            return picker.pick(context), panic
        if not self._hosts or (sum(load.healthy) + sum(load.degraded)) == 0:
            return None, False
        # Consistent-hash policies pick the priority from the hash too (Envoy
        # ThreadAwareLoadBalancerBase); the others draw a random number.
        hashing = self.config.lb_policy in (LbPolicy.RING_HASH, LbPolicy.MAGLEV)
        bucket = (context.hash_key % 100 if hashing and context.hash_key is not None
                  else self._rng.randrange(100))
        priority, degraded = load.choose(bucket)
        panic = load.panic[priority]
        kind = "all" if panic else ("degraded" if degraded else "healthy")
        locality = None
        if self.config.locality_weighted_lb and not panic:
            locality = self._locality_scheduler(priority, kind).pick()
        picker = self._picker(priority, kind, locality)
        return picker.pick(context), panic

    def _locality_scheduler(self, priority: int, kind: str) -> LocalityScheduler:
        scheduler = self._locality_schedulers.get((priority, kind))
        if scheduler is None:
            level = self._levels[priority]
            weights = effective_weights(level[kind], level["all"],
                                        self._overprovisioning_factor())
            scheduler = self._locality_schedulers[(priority, kind)] = LocalityScheduler(weights)
        return scheduler

    def _picker(self, priority: int, kind: str, locality: Locality | None) -> Picker:
        """The picker over one priority's hosts of `kind`, narrowed to `locality` if given
        (None: the whole priority, which is also Envoy's fallback when no locality has an
        effective weight)."""
        picker = self._pickers.get((priority, kind, locality))
        if picker is None:
            hosts = self._levels[priority][kind]
            if locality is not None:
                hosts = tuple(host for host in hosts if host.locality == locality)
            picker = self._factory(hosts, self._rng)
            self._pickers[(priority, kind, locality)] = picker
        return picker
