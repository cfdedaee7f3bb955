"""The cluster manager: every cluster's runtime, kept in step with CDS/EDS (or the bootstrap).

Synchronous API for the xDS client and the bootstrap:

    manager = ClusterManager(stats)
    manager.update(clusters, assignments)    # state of the world: clusters not listed go away
    manager.update_assignment(assignment)     # one EDS ClusterLoadAssignment
    runtime = manager.get("backend")          # ClusterRuntime | None

and an asyncio side owned by the manager: `await manager.start()` begins active health checks,
DNS resolution (STRICT_DNS / LOGICAL_DNS, re-resolved every dns_refresh_rate) and the outlier
detection timers, for the clusters present now and those added later; `await manager.close()`
cancels them all. Every task belongs to the per-cluster `_ClusterTasks` that created it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from proxy.model.cluster import Cluster, DiscoveryType
from proxy.model.endpoint import LoadAssignment
from proxy.stats import Stats
from proxy.tasks import log_failure
from proxy.upstream.cluster import ClusterRuntime
from proxy.upstream.connect import DnsTargets
from proxy.upstream.health.runner import HealthCheckRunner
from proxy.upstream.host_set import ResolvedEndpoint

log = logging.getLogger(__name__)


class ClusterManager:
    def __init__(self, stats: Stats, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.stats = stats
        self.clock = clock
        self.rng = rng or random.Random()
        self._clusters: dict[str, ClusterRuntime] = {}
        self._assignments: dict[str, LoadAssignment] = {}
        self._tasks: dict[str, _ClusterTasks] = {}
        self._running = False
        # Cancelled tasks not yet finished, awaited by close().
        self._closing: list[asyncio.Task[None]] = []
        self._progress: asyncio.Event | None = None  # set on any host or health change
        # Called on any host or health change (the server's warming waits on these).
        self.progress_listeners: list[Callable[[], None]] = []

    # -- configuration (synchronous) -----------------------------------------------------------

    def update(self, clusters: Iterable[Cluster],
               assignments: Mapping[str, LoadAssignment] | None = None) -> None:
        """Apply the full set of clusters (static + CDS). New clusters are created, changed
        ones reconfigured in place (hosts keep their health), missing ones removed and their
        tasks cancelled. `assignments` maps EDS resource names (`eds_service_name` or the
        cluster name) to endpoints; an EDS cluster without one keeps its previous hosts and
        stays uninitialized until one arrives."""
        wanted = {cluster.name: cluster for cluster in clusters}
        for name in list(self._clusters):
            if name not in wanted:
                self._remove(name)
        for assignment in (assignments or {}).values():
            self._assignments[assignment.cluster_name] = assignment
        for name, config in wanted.items():
            runtime = self._clusters.get(name)
            if runtime is None:
                self._add(config)
            elif runtime.config != config:
                self._reconfigure(runtime, config)

    def update_assignment(self, assignment: LoadAssignment) -> None:
        """One EDS update, keyed by `assignment.cluster_name` (the EDS service name)."""
        self._assignments[assignment.cluster_name] = assignment
        for runtime in self._clusters.values():
            if (runtime.config.type is DiscoveryType.EDS
                    and runtime.config.eds_resource_name == assignment.cluster_name):
                self._apply_assignment(runtime, assignment)

    def get(self, name: str) -> ClusterRuntime | None:
        return self._clusters.get(name)

    def names(self) -> list[str]:
        return sorted(self._clusters)

    def eds_resource_names(self) -> list[str]:
        """The EDS resources to subscribe to (one per EDS cluster)."""
        return sorted({r.config.eds_resource_name for r in self._clusters.values()
                       if r.config.type is DiscoveryType.EDS})

    def all_initialized(self) -> bool:
        """Envoy's cluster warming: every cluster has endpoints and first health results."""
        return all(runtime.initialized for runtime in self._clusters.values()
                   if runtime.config.wait_for_warm_on_init)

    def admin_view(self) -> dict[str, Any]:
        """JSON-able, shaped like Envoy's `/clusters?format=json` (`cluster_statuses`)."""
        return {"cluster_statuses": [self._clusters[name].admin_view() for name in self.names()]}

    def _add(self, config: Cluster) -> None:
        runtime = ClusterRuntime(config, self.stats, clock=self.clock, rng=self.rng)
        runtime.state_listeners.append(self._on_progress)
        self._clusters[config.name] = runtime
        self._load_static_endpoints(runtime)
        if self._running:
            self._start_tasks(runtime)

    def _reconfigure(self, runtime: ClusterRuntime, config: Cluster) -> None:
        old = runtime.config
        runtime.reconfigure(config)
        self._load_static_endpoints(runtime)
        if self._running and _task_inputs(old) != _task_inputs(config):
            self._stop_tasks(runtime.name)
            self._start_tasks(runtime)

    def _remove(self, name: str) -> None:
        self._stop_tasks(name)
        removed = self._clusters.pop(name)
        still_used = {r.config.eds_resource_name for r in self._clusters.values()
                      if r.config.type is DiscoveryType.EDS}
        if removed.config.eds_resource_name not in still_used:
            self._assignments.pop(removed.config.eds_resource_name, None)

    def _load_static_endpoints(self, runtime: ClusterRuntime) -> None:
        config = runtime.config
        if config.type is DiscoveryType.STATIC and config.load_assignment is not None:
            self._apply_assignment(runtime, config.load_assignment)
        elif config.type is DiscoveryType.EDS:
            assignment = self._assignments.get(config.eds_resource_name)
            if assignment is not None:
                self._apply_assignment(runtime, assignment)

    @staticmethod
    def _apply_assignment(runtime: ClusterRuntime, assignment: LoadAssignment) -> None:
        runtime.host_set.set_overprovisioning_factor(assignment.overprovisioning_factor)
        runtime.set_endpoints(
            ResolvedEndpoint(endpoint, endpoint.address, group.locality, group.priority,
                             group.weight, group.socket_metadata)
            for group in assignment.localities for endpoint in group.endpoints)

    # -- asyncio side -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start health checking, DNS and outlier timers for all current and future clusters."""
        self._running = True
        for runtime in self._clusters.values():
            self._start_tasks(runtime)

    def _on_progress(self) -> None:
        if self._progress is not None:
            self._progress.set()
        for listener in self.progress_listeners:
            listener()

    async def wait_initialized(self) -> None:
        """Return once `all_initialized()` (bound it with `asyncio.timeout`)."""
        if self._progress is None:
            self._progress = asyncio.Event()
        while not self.all_initialized():
            self._progress.clear()
            await self._progress.wait()

    async def close(self) -> None:
        self._running = False
        names = list(self._tasks)
        for name in names:
            self._stop_tasks(name)
        pending = list(self._closing)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        self._closing.clear()

    def _start_tasks(self, runtime: ClusterRuntime) -> None:
        self._tasks[runtime.name] = _ClusterTasks(runtime, self.rng)

    def _stop_tasks(self, name: str) -> None:
        tasks = self._tasks.pop(name, None)
        if tasks is not None:
            self._closing = [task for task in self._closing if not task.done()]
            self._closing.extend(tasks.cancel())

    def __repr__(self) -> str:
        return f"ClusterManager({', '.join(self.names())})"


class _ClusterTasks:
    """The asyncio tasks of one cluster: DNS refresh, health checks, outlier timer."""

    def __init__(self, runtime: ClusterRuntime, rng: random.Random) -> None:
        self.runtime = runtime
        self.tasks: list[asyncio.Task[None]] = []
        self.health: HealthCheckRunner | None = None
        config = runtime.config
        if config.type in (DiscoveryType.STRICT_DNS, DiscoveryType.LOGICAL_DNS):
            self._spawn(self._dns_loop(), "dns")
        if config.health_checks:
            self.health = HealthCheckRunner(runtime, rng)
            self._spawn(self.health.run(), "health")
        if config.outlier_detection is not None:
            self._spawn(self._outlier_loop(), "outlier")

    def _spawn(self, coro: Any, what: str) -> None:
        task = asyncio.get_running_loop().create_task(
            coro, name=f"cluster {self.runtime.name} {what}")
        task.add_done_callback(log_failure)  # a crashed DNS/health/outlier loop is not silent
        self.tasks.append(task)

    def cancel(self) -> list[asyncio.Task[None]]:
        for task in self.tasks:
            task.cancel()
        return self.tasks

    async def _dns_loop(self) -> None:
        config = self.runtime.config
        targets = DnsTargets(config)
        prefix = f"cluster.{config.name}."
        while True:
            self.runtime.stats.counter(prefix + "update_attempt").inc()
            hosts, errors = await targets.refresh()
            if errors:
                log.warning("cluster %s: DNS resolution failed: %s", config.name,
                            "; ".join(errors))
                self.runtime.stats.counter(prefix + "update_failure").inc()
            else:
                self.runtime.stats.counter(prefix + "update_success").inc()
            # Failed targets keep their last good hosts; the first round initializes the
            # cluster even if it failed (Envoy), so start-up never waits on DNS forever.
            self.runtime.set_endpoints(hosts)
            await asyncio.sleep(config.dns_refresh_rate)

    async def _outlier_loop(self) -> None:
        while True:
            detector = self.runtime.outlier
            if detector is None:
                return
            now = self.runtime.clock()
            await asyncio.sleep(max(0.0, detector.next_tick_at(now) - now))
            detector.tick(self.runtime.clock())


def _task_inputs(config: Cluster) -> tuple[Any, ...]:
    """What the per-cluster tasks were built from: a change restarts them."""
    return (config.type, config.load_assignment, config.dns_refresh_rate,
            config.dns_lookup_family, config.health_checks, config.upstream_tls,
            config.socket_matches,
            config.outlier_detection)
