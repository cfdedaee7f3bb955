"""One cluster at run time: its hosts by priority, load balancing, health, breakers and stats.

`ClusterRuntime` is synchronous bookkeeping (no I/O, time passed in through `clock`); the
asyncio parts (active health checks, DNS refresh, the outlier-detection timer) live in
`proxy.upstream.manager` and only call the methods here.

The data path, for tcp_proxy and the HTTP router:

    runtime = manager.get("backend")             # None: unknown cluster
    host = runtime.choose_host(LbContext(hash_key=...))   # None: no healthy upstream
    breaker = runtime.circuit_breaker(RoutingPriority.DEFAULT)
    if not breaker.try_acquire(Resource.REQUESTS): ...   # overflow counted, refuse fast
    runtime.request_started(host)
    ...
    runtime.request_finished(host, http_status=502)   # or result=Result.LOCAL_ORIGIN_TIMEOUT
    breaker.release(Resource.REQUESTS)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from proxy.model.cluster import Cluster, DiscoveryType
from proxy.model.socket_match import SocketChoice, match_stat_name
from proxy.stats import Counter, Stats
from proxy.upstream.circuit_breakers import CircuitBreaker, RoutingPriority
from proxy.upstream.health.outlier import OutlierDetector
from proxy.upstream.host import Health, HealthFlag, Host, Result
from proxy.upstream.host_set import HostSet, ResolvedEndpoint
from proxy.upstream.lb.base import LbContext
from proxy.upstream.lb.policies import picker_factory

# Outcomes that count as a failed request on the host (alongside HTTP 5xx).
_FAILED_RESULTS = frozenset({Result.LOCAL_ORIGIN_CONNECT_FAILED, Result.LOCAL_ORIGIN_TIMEOUT,
                             Result.EXT_ORIGIN_REQUEST_FAILED})


class ClusterRuntime:
    """The live state of one cluster. Replace config with `reconfigure`, hosts with
    `set_endpoints`; both keep the state of hosts that stay (health, counters)."""

    def __init__(self, config: Cluster, stats: Stats, *,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.name = config.name
        self.stats = stats
        self.clock = clock
        self.rng = rng or random.Random()
        self.prefix = f"cluster.{config.name}."
        self._count_handshakes(config)
        # Envoy keeps a cluster "warming" until its first endpoints (EDS/DNS) and first
        # round of health checks arrive; `initialized` is True after that.
        self.endpoints_received = False
        self.had_traffic = False  # Envoy's no_traffic_interval applies until the first connection
        self._warmed = False
        self.host_set = HostSet(config, picker_factory(config), self.rng)
        self.outlier = (OutlierDetector(config.outlier_detection, self._on_ejection_change,
                                        self.rng, stats, self.prefix)
                        if config.outlier_detection else None)
        self._breakers = {
            priority: CircuitBreaker(config.name, priority,
                                     config.circuit_breakers.for_priority(priority), stats)
            for priority in RoutingPriority
        }
        # Per-request stats, their names built once (not per request).
        self._rq_total = stats.counter(self.prefix + "upstream_rq_total")
        self._rq_active = stats.gauge(self.prefix + "upstream_rq_active")
        self._rq_completed = stats.counter(self.prefix + "upstream_rq_completed")
        self._rq_by_status: dict[int, tuple[Counter, Counter]] = {}
        self._host_change_listeners: list[Callable[[ClusterRuntime], None]] = []
        # Called after any host-set or health change (the manager's initialization watch).
        self.state_listeners: list[Callable[[], None]] = []
        self._update_membership()

    # -- configuration ------------------------------------------------------------------------

    def reconfigure(self, config: Cluster) -> None:
        """A new version of this cluster's config (same name); hosts and their state are kept
        when the discovery type and endpoints allow it."""
        old = self.config
        self.config = config
        self._count_handshakes(config)
        self.host_set.reconfigure(config, picker_factory(config))
        for priority, breaker in self._breakers.items():
            breaker.retune(config.circuit_breakers.for_priority(priority))
        if old.outlier_detection != config.outlier_detection:
            # A new detector starts from scratch: nothing stays ejected by the old one.
            self._clear_flags(HealthFlag.FAILED_OUTLIER_CHECK)
            if self.outlier is not None:
                self.stats.gauge(self.prefix + "outlier_detection.ejections_active").set(0)
            self.outlier = (OutlierDetector(config.outlier_detection, self._on_ejection_change,
                                            self.rng, self.stats, self.prefix)
                            if config.outlier_detection else None)
        if not config.health_checks:
            # Health checking removed: its verdicts no longer apply.
            self._clear_flags(HealthFlag.FAILED_ACTIVE_HC | HealthFlag.PENDING_ACTIVE_HC)
        self.health_changed()

    def _count_handshakes(self, config: Cluster) -> None:
        """One `cluster.<name>.ssl.` scope for every TLS socket of the cluster (its
        transport_socket and its transport_socket_matches), as Envoy's."""
        for tls in config.all_transports():
            if tls.binding is not None:
                tls.binding.count_into(self.stats, self.prefix + "ssl.")

    def _clear_flags(self, flags: HealthFlag) -> None:
        for host in self.hosts:
            host.flags &= ~flags

    def set_endpoints(self, endpoints: Iterable[ResolvedEndpoint]) -> None:
        """Replace the host set (from EDS, DNS or the inline load_assignment). Hosts that stay
        (same address and port) keep their health flags and counters; new hosts start
        failed-active-HC when the cluster has health checks, as in Envoy."""
        health_checked = bool(self.config.health_checks)
        endpoints = list(endpoints)
        self._count_socket_matches(endpoints)
        added, removed = self.host_set.update(
            endpoints, health_checked=health_checked,
            keep_healthy_removed=health_checked and self.config.type is not DiscoveryType.STATIC)
        self.endpoints_received = True
        self._hosts_changed(added, removed)

    def _count_socket_matches(self, endpoints: list[ResolvedEndpoint]) -> None:
        """`<match>.total_match_count`: Envoy resolves the transport socket of every host it
        builds from an update (HostDescriptionImpl), kept or not, and once more for a kept
        host whose metadata the update changed (HostDescriptionImplBase::metadata; measured
        against Envoy 1.40; proxy.model.socket_match)."""
        for resolved in endpoints:
            metadata = resolved.endpoint.socket_metadata
            choice = self.config.socket_for(metadata, resolved.locality_socket_metadata)
            counter = self.stats.counter(match_stat_name(self.prefix, choice.name))
            counter.inc()
            kept = self.host_set.get(resolved.key)
            if kept is not None and kept.socket_metadata != metadata:
                counter.inc()

    def socket_for(self, host: Host) -> SocketChoice:
        """The transport socket `host` connects with (pools, tcp_proxy, health checks)."""
        return self.config.socket_for(host.socket_metadata, host.locality_socket_metadata)

    def _hosts_changed(self, added: list[Host], removed: list[Host]) -> None:
        if self.outlier is not None:
            for host in removed:
                self.outlier.remove_host(host)
        if added or removed:
            self.stats.counter(self.prefix + "membership_change").inc()
        self._update_membership()
        for listener in list(self._host_change_listeners):
            listener(self)
        self._notify_state()

    def _notify_state(self) -> None:
        self._update_initialized()
        for notify in list(self.state_listeners):
            notify()

    def on_hosts_changed(self, listener: Callable[[ClusterRuntime], None]) -> None:
        """Call `listener(runtime)` after every host set update (health checkers use this)."""
        self._host_change_listeners.append(listener)

    def remove_hosts_listener(self, listener: Callable[[ClusterRuntime], None]) -> None:
        if listener in self._host_change_listeners:
            self._host_change_listeners.remove(listener)

    @property
    def hosts(self) -> list[Host]:
        return self.host_set.all_hosts()

    @property
    def initialized(self) -> bool:
        """Endpoints known, and every health-checked host checked at least once (hosts added
        later do not send the cluster back to warming)."""
        return self.endpoints_received and self._warmed

    def _update_initialized(self) -> None:
        if self.endpoints_received and not any(
                host.flags & HealthFlag.PENDING_ACTIVE_HC for host in self.hosts):
            self._warmed = True

    # -- load balancing -----------------------------------------------------------------------

    def choose_host(self, context: LbContext | None = None) -> Host | None:
        """A host for one connection or request, or None ("no healthy upstream").

        Picks a priority by Envoy's priority load (hash_key % 100 when the context has a hash
        key, else random), then a host within that priority with the cluster's LB policy;
        priorities in panic balance over all their hosts (stat `lb_healthy_panic`).
        """
        context = context or LbContext()
        host, panic = self.host_set.choose(context)
        if panic:
            self.stats.counter(self.prefix + "lb_healthy_panic").inc()
        return host

    # -- connections and requests (feed least-request, stats and outlier detection) ----------

    def connection_opened(self, host: Host) -> None:
        """An upstream connection to `host` is established (after connect succeeded)."""
        self.had_traffic = True
        host.active_connections += 1
        host.connections_total += 1
        self.stats.counter(self.prefix + "upstream_cx_total").inc()
        self.stats.gauge(self.prefix + "upstream_cx_active").inc()
        self.report(host, result=Result.LOCAL_ORIGIN_CONNECT_SUCCESS)

    def connection_failed(self, host: Host, *, timeout: bool = False) -> None:
        """Connecting to `host` failed (refused/unreachable) or timed out (connect_timeout).
        Envoy also counts the attempt as a destroyed connection: closed by the peer (a
        refusal), or by us when connect_timeout fires."""
        self.had_traffic = True
        counter = self.stats.counter
        counter(self.prefix + "upstream_cx_total").inc()
        counter(self.prefix + "upstream_cx_connect_fail").inc()
        self._count_destroy(local=timeout, with_active_request=False)
        if timeout:
            counter(self.prefix + "upstream_cx_connect_timeout").inc()
        host.connections_total += 1
        self.report(host, result=(Result.LOCAL_ORIGIN_TIMEOUT if timeout
                                  else Result.LOCAL_ORIGIN_CONNECT_FAILED))

    def connection_closed(self, host: Host, *, local: bool, with_active_request: bool) -> None:
        """An established upstream connection to `host` closed: by us (`local`) or by the
        peer, with a request still incomplete on it or not. Envoy's ConnPoolImplBase
        onConnectionEvent counts upstream_cx_destroy and its _local/_remote split, and the
        _with_active_rq family when the connection dies under an unfinished stream."""
        host.active_connections -= 1
        self.stats.gauge(self.prefix + "upstream_cx_active").dec()
        self._count_destroy(local=local, with_active_request=with_active_request)

    def _count_destroy(self, *, local: bool, with_active_request: bool) -> None:
        side = "local" if local else "remote"
        counter = self.stats.counter
        counter(self.prefix + "upstream_cx_destroy").inc()
        counter(f"{self.prefix}upstream_cx_destroy_{side}").inc()
        if with_active_request:
            counter(self.prefix + "upstream_cx_destroy_with_active_rq").inc()
            counter(f"{self.prefix}upstream_cx_destroy_{side}_with_active_rq").inc()

    def request_started(self, host: Host) -> None:
        """A request is now in flight on `host` (least-request reads `active_requests`)."""
        host.active_requests += 1
        host.requests_total += 1
        self._rq_total.value += 1
        self._rq_active.value += 1

    def request_finished(self, host: Host, *, http_status: int | None = None,
                         result: Result | None = None, charge_code: bool = True) -> None:
        """The request on `host` ended: with an HTTP status from upstream, or with a `Result`
        (local-origin failure such as a reset or timeout, or a non-HTTP outcome). Counts
        `upstream_rq_completed`, `upstream_rq_<code>` / `upstream_rq_<N>xx` (unless
        `charge_code` is False: Envoy's router charges no code for a response it retries)
        and feeds outlier detection."""
        host.active_requests -= 1
        self._rq_active.value -= 1
        if http_status is not None and charge_code:
            self.charge_code(http_status)
        failed = (http_status is not None and http_status >= 500) or (
            result is not None and result in _FAILED_RESULTS)
        if failed:
            host.requests_error += 1
        else:
            host.requests_success += 1
        self.report(host, http_status=http_status, result=result)

    def charge_code(self, status: int) -> None:
        """Envoy CodeStatsImpl::chargeBasicResponseStat: upstream_rq_completed, the class
        (upstream_rq_5xx) and the code (upstream_rq_503). For upstream answers (through
        request_finished) and for the router's own answers on the cluster's behalf."""
        self._rq_completed.value += 1
        by_status = self._rq_by_status.get(status)
        if by_status is None:
            by_status = self._status_counters(status)
        by_status[0].value += 1
        by_status[1].value += 1

    def _status_counters(self, status: int) -> tuple[Counter, Counter]:
        """upstream_rq_<code> and upstream_rq_<N>xx (bounded: codes come from upstreams)."""
        pair = (self.stats.counter(f"{self.prefix}upstream_rq_{status}"),
                self.stats.counter(f"{self.prefix}upstream_rq_{status // 100}xx"))
        if len(self._rq_by_status) < 1000:
            self._rq_by_status[status] = pair
        return pair

    def report(self, host: Host, *, http_status: int | None = None,
               result: Result | None = None) -> None:
        """Feed one outcome to outlier detection only (no request accounting)."""
        if self.outlier is None:
            return
        now = self.clock()
        if http_status is not None:
            self.outlier.report_http_status(host, http_status, now)
        if result is not None:
            self.outlier.report_result(host, result, now)

    def circuit_breaker(self, priority: RoutingPriority = RoutingPriority.DEFAULT
                        ) -> CircuitBreaker:
        """The breaker for a routing priority: `try_acquire(Resource.X)` / `release(...)`."""
        return self._breakers[priority]

    # -- health (called by the health-check runner and the outlier timer) ---------------------

    def health_changed(self) -> None:
        """A host's health flags changed: recompute priority load, pickers and gauges, and
        let hosts awaiting removal go once they fail their checks."""
        self.host_set.invalidate()
        gone = self.host_set.drop_failed_pending_removals()
        if gone:
            self._hosts_changed([], gone)
            return
        self._update_membership()
        self._notify_state()

    def _on_ejection_change(self, host: Host, ejected: bool) -> None:
        host.set_flag(HealthFlag.FAILED_OUTLIER_CHECK, ejected)
        self.health_changed()

    def _update_membership(self) -> None:
        hosts = self.hosts
        self.stats.gauge(self.prefix + "membership_total").set(len(hosts))
        self.stats.gauge(self.prefix + "membership_healthy").set(
            sum(1 for host in hosts if host.health is Health.HEALTHY))
        self.stats.gauge(self.prefix + "membership_degraded").set(
            sum(1 for host in hosts if host.health is Health.DEGRADED))
        if self.outlier is not None:
            self.outlier.set_host_count(len(hosts))

    # -- admin ----------------------------------------------------------------------------------

    def admin_view(self) -> dict[str, Any]:
        """A JSON-able view for /clusters (shaped like Envoy's `/clusters?format=json`)."""
        return {
            "name": self.name,
            "type": self.config.type.name,
            "lb_policy": self.config.lb_policy.name,
            "initialized": self.initialized,
            "priority_load": list(self.host_set.load().healthy),
            "host_statuses": [
                {
                    "address": {"socket_address": {"address": h.address, "port_value": h.port}},
                    "hostname": h.hostname,
                    "weight": h.weight,
                    "priority": h.priority,
                    "locality": {"region": h.locality.region, "zone": h.locality.zone,
                                 "sub_zone": h.locality.sub_zone},
                    "health": h.health.value,
                    "health_flags": h.health_flag_names(),
                    "active_requests": h.active_requests,
                    "active_connections": h.active_connections,
                    "stats": {"cx_total": h.connections_total, "rq_total": h.requests_total,
                              "rq_success": h.requests_success, "rq_error": h.requests_error},
                }
                for h in self.hosts
            ],
            "circuit_breakers": {
                priority.name: {r.name.lower(): breaker.thresholds.limit(r)
                                for r in breaker.in_use}
                for priority, breaker in self._breakers.items()
            },
        }

    def __repr__(self) -> str:
        return (f"ClusterRuntime({self.name}, {self.config.type.name}, "
                f"{self.config.lb_policy.name}, hosts={len(self.hosts)})")
