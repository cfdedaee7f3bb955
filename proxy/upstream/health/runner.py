"""The thin asyncio adapter for active health checks: one task per host, owned by the runner.

Each host task sleeps for the state machine's delay, runs one probe bounded by the check's
`timeout`, feeds the verdict to `HostCheckState.on_result`, and tells the cluster runtime when
health changed. Host-set changes start tasks for new hosts and cancel tasks of removed ones.
Stats (Envoy names, under `cluster.NAME.health_check.`): attempt, success, failure,
network_failure, healthy (gauge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import TYPE_CHECKING

from proxy.model.health import CheckKind, HealthCheck
from proxy.tasks import log_failure
from proxy.upstream.health.http_prober import HttpProber
from proxy.upstream.health.probes import GrpcProber, ProbeTls, tcp_probe
from proxy.upstream.health.state import HostCheckState, Transition, Verdict
from proxy.upstream.host import HealthFlag, Host

if TYPE_CHECKING:
    from proxy.upstream.cluster import ClusterRuntime

log = logging.getLogger(__name__)


class HealthCheckRunner:
    def __init__(self, runtime: ClusterRuntime, rng: random.Random) -> None:
        self.runtime = runtime
        self.check: HealthCheck = runtime.config.health_checks[0]
        self.rng = rng
        self.prefix = f"cluster.{runtime.name}.health_check."
        self._tasks: dict[Host, asyncio.Task[None]] = {}
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        """Check every host until cancelled; follows host-set changes."""
        self.runtime.on_hosts_changed(self._sync_hosts)
        try:
            self._sync_hosts(self.runtime)
            await self._stopped.wait()
        finally:
            self.runtime.remove_hosts_listener(self._sync_hosts)
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks.clear()

    def _sync_hosts(self, runtime: ClusterRuntime) -> None:
        current = {host for host in runtime.hosts if not host.active_health_check_disabled}
        for host in list(self._tasks):
            if host not in current:
                self._tasks.pop(host).cancel()
        for host in current:
            if host not in self._tasks:
                task = asyncio.get_running_loop().create_task(
                    self._check_host(host), name=f"health check {runtime.name} {host.key}")
                task.add_done_callback(log_failure)
                self._tasks[host] = task

    async def _check_host(self, host: Host) -> None:
        state = HostCheckState(self.check)
        prober = self._prober(host)
        try:
            await asyncio.sleep(state.initial_delay(self.rng))
            while True:
                verdict = await self._probe(host, prober)
                self._record(host, state, verdict)
                await asyncio.sleep(state.next_interval(
                    host, had_traffic=self.runtime.had_traffic, rng=self.rng))
        finally:
            if prober is not None:
                await prober.close()

    def _prober(self, host: Host) -> GrpcProber | HttpProber | None:
        """The per-host prober that keeps a connection (gRPC channel, HTTP keep-alive)."""
        address, port = self._target(host)
        if self.check.kind is CheckKind.GRPC:
            assert self.check.grpc is not None
            return GrpcProber(address, port, self.check.grpc, self._authority(host))
        if self.check.kind is CheckKind.HTTP:
            assert self.check.http is not None
            return HttpProber(address, port, self.check.http, self._authority(host),
                              tls=self._tls(host), reuse_connection=self.check.reuse_connection)
        return None

    async def _follow_socket(self, host: Host, prober: HttpProber) -> None:
        """An EDS update changed the host's metadata and with it its transport socket: the
        kept connection was made with the old one, so the next check connects anew (Envoy
        resolves the socket per new health-check connection)."""
        tls = self._tls(host)
        if prober.tls != tls:
            await prober.close()
            prober.tls = tls

    def _tls(self, host: Host) -> ProbeTls | None:
        """The transport socket Envoy's checks use: the one `transport_socket_match_criteria`
        selects among the cluster's matches (with the host's locality metadata), else the
        host's own (HealthCheckerImplBase, HostImpl::createHealthCheckConnection)."""
        config = self.runtime.config
        criteria = self.check.socket_match_criteria
        if criteria is not None:
            tls = config.socket_for(criteria, host.locality_socket_metadata).transport
        else:
            tls = config.socket_for(host.socket_metadata,
                                    host.locality_socket_metadata).transport
        if tls is None or tls.ssl_context is None:
            return None
        return ProbeTls(tls.ssl_context, tls.sni)

    def _target(self, host: Host) -> tuple[str, int]:
        # Envoy: the endpoint's health_check_config.port_value, else the cluster check's
        # alt_port, else the host's own port.
        return host.address, (host.health_check_port or self.check.alt_port or host.port)

    def _authority(self, host: Host) -> str:
        """Envoy `getHostname`: the endpoint's health-check hostname, else the check's
        host/authority, else the cluster name."""
        check = self.check
        configured = (check.http.host if check.http is not None
                      else check.grpc.authority if check.grpc is not None else "")
        return host.health_check_hostname or configured or self.runtime.name

    async def _probe(self, host: Host, prober: GrpcProber | HttpProber | None) -> Verdict:
        address, port = self._target(host)
        check = self.check
        self.runtime.stats.counter(self.prefix + "attempt").inc()
        if isinstance(prober, GrpcProber):
            return await prober.probe(check.timeout)  # the RPC deadline bounds it
        if isinstance(prober, HttpProber):
            await self._follow_socket(host, prober)
        try:
            async with asyncio.timeout(check.timeout):
                if prober is not None:
                    return await prober.probe()
                assert check.tcp is not None
                return await tcp_probe(address, port, check.tcp, self._tls(host))
        except TimeoutError:
            return Verdict.TIMEOUT

    def _record(self, host: Host, state: HostCheckState, verdict: Verdict) -> None:
        was_pending = bool(host.flags & HealthFlag.PENDING_ACTIVE_HC)
        was_degraded = bool(host.flags & HealthFlag.DEGRADED_ACTIVE_HC)
        transition = state.on_result(host, verdict)
        stats = self.runtime.stats
        if verdict in (Verdict.SUCCESS, Verdict.DEGRADED):
            stats.counter(self.prefix + "success").inc()
            if verdict is Verdict.DEGRADED:
                stats.counter(self.prefix + "degraded").inc()
            if self.runtime.outlier is not None:
                self.runtime.outlier.active_health_check_succeeded(host)
        else:
            stats.counter(self.prefix + "failure").inc()
            if verdict in (Verdict.NETWORK_FAILURE, Verdict.TIMEOUT):
                stats.counter(self.prefix + "network_failure").inc()
        degraded_changed = was_degraded != bool(host.flags & HealthFlag.DEGRADED_ACTIVE_HC)
        if transition is Transition.CHANGED or was_pending or degraded_changed:
            log.info("cluster %s: host %s:%d is now %s", self.runtime.name, host.address,
                     host.port, host.health.value)
            self.runtime.health_changed()
        stats.gauge(self.prefix + "healthy").set(
            sum(1 for h in self.runtime.hosts if not h.flags & HealthFlag.FAILED_ACTIVE_HC))
