"""The per-host active health check state machine, sans-I/O (Envoy
source/common/upstream/health_checker_impl.cc, `ActiveHealthCheckSession`).

Rules (api/envoy/config/core/v3/health_check.proto and arch_overview/upstream/health_checking):
- a new host of a health-checked cluster starts failed (FAILED_ACTIVE_HC) and pending; its
  *first* successful check makes it healthy at once, later it takes `healthy_threshold`
  consecutive successes;
- a network failure (connect refused, reset, timeout) makes a healthy host unhealthy after
  `unhealthy_threshold` consecutive failures; an active failure (HTTP status not expected,
  gRPC status not SERVING) makes it unhealthy immediately;
- the next check comes after `interval` (last check passed) or `unhealthy_interval` (it
  failed), `healthy_edge_interval` / `unhealthy_edge_interval` while a transition is pending,
  or `no_traffic_interval` (default 60 s) while the cluster has never had an upstream connection;
  plus jitter: up to `interval_jitter_percent` of that base and up to `interval_jitter`.
"""

from __future__ import annotations

import enum
import random

from proxy.model.health import HealthCheck
from proxy.upstream.host import HealthFlag, Host


class Verdict(enum.Enum):
    SUCCESS = "success"
    DEGRADED = "degraded"  # passed, but the host asked to be degraded (x-envoy-degraded)
    ACTIVE_FAILURE = "active_failure"  # the host answered, wrongly: unhealthy at once
    NETWORK_FAILURE = "network_failure"  # refused/reset/closed: counts to the threshold
    TIMEOUT = "timeout"  # no answer within `timeout`: counts to the threshold


class Transition(enum.Enum):
    UNCHANGED = "unchanged"
    CHANGED = "changed"
    CHANGE_PENDING = "change_pending"


class HostCheckState:
    """Counters for one host under one health check."""

    def __init__(self, check: HealthCheck) -> None:
        self.check = check
        self.first_check = True
        self.num_healthy = 0
        self.num_unhealthy = 0
        self.last_transition = Transition.UNCHANGED
        self.last_success = False

    def on_result(self, host: Host, verdict: Verdict) -> Transition:
        """Apply one check result to `host`'s FAILED_ACTIVE_HC flag."""
        passed = verdict in (Verdict.SUCCESS, Verdict.DEGRADED)
        transition = self._on_success(host) if passed else self._on_failure(host, verdict)
        if passed:
            host.set_flag(HealthFlag.DEGRADED_ACTIVE_HC, verdict is Verdict.DEGRADED)
        host.set_flag(HealthFlag.PENDING_ACTIVE_HC, False)
        self.first_check = False
        self.last_success = passed
        self.last_transition = transition
        return transition

    def _on_success(self, host: Host) -> Transition:
        self.num_unhealthy = 0
        if not host.flags & HealthFlag.FAILED_ACTIVE_HC:
            return Transition.UNCHANGED
        self.num_healthy += 1
        if self.first_check or self.num_healthy >= self.check.healthy_threshold:
            host.set_flag(HealthFlag.FAILED_ACTIVE_HC, False)
            self.num_healthy = 0
            return Transition.CHANGED
        return Transition.CHANGE_PENDING

    def _on_failure(self, host: Host, verdict: Verdict) -> Transition:
        self.num_healthy = 0
        if host.flags & HealthFlag.FAILED_ACTIVE_HC:
            return Transition.UNCHANGED
        self.num_unhealthy += 1
        if verdict is Verdict.ACTIVE_FAILURE or \
                self.num_unhealthy >= self.check.unhealthy_threshold:
            host.set_flag(HealthFlag.FAILED_ACTIVE_HC, True)
            self.num_unhealthy = 0
            return Transition.CHANGED
        return Transition.CHANGE_PENDING

    def next_interval(self, host: Host, *, had_traffic: bool, rng: random.Random) -> float:
        """Seconds until the next check, with jitter (Envoy `HealthCheckerImplBase::interval`)."""
        base = self.base_interval(host, had_traffic=had_traffic)
        check = self.check
        jitter = 0.0
        if check.interval_jitter_percent > 0:
            jitter += rng.uniform(0, base * check.interval_jitter_percent / 100)
        if check.interval_jitter > 0:
            jitter += rng.uniform(0, check.interval_jitter)
        return base + jitter

    def base_interval(self, host: Host, *, had_traffic: bool) -> float:
        """Envoy picks the base from the *last result* (success or failure) and whether a
        transition is pending, not from the host's standing health."""
        check = self.check
        if not had_traffic:
            if self.last_success and check.no_traffic_healthy_interval:
                return check.no_traffic_healthy_interval
            return check.no_traffic_interval
        pending = self.last_transition is Transition.CHANGE_PENDING
        if self.last_success:
            return (check.healthy_edge_interval or check.interval) if pending else check.interval
        unhealthy_interval = check.unhealthy_interval or check.interval
        return (check.unhealthy_edge_interval or unhealthy_interval) if pending \
            else unhealthy_interval

    def initial_delay(self, rng: random.Random) -> float:
        """Envoy starts each host's checks after a random 0..initial_jitter."""
        return rng.uniform(0, self.check.initial_jitter) if self.check.initial_jitter else 0.0
