"""Passive outlier detection, sans-I/O (Envoy arch_overview/upstream/outlier and
source/common/upstream/outlier_detection_impl.cc).

Outcomes come in with `report_http_status` / `report_result` and an explicit `now`; the owner
calls `tick(now)` every `config.interval` seconds (`next_tick_at`). Rules:

- consecutive 5xx (any 5xx; without `split_external_local_origin_errors`, connect failures
  count as 503 and timeouts as 504), consecutive gateway failures (502/503/504), and, in split
  mode, consecutive local-origin failures (connect failure, timeout) each eject at their
  threshold, with probability `enforcing_*` percent; a success resets the counters;
- an ejection is refused (counted `ejections_overflow`) when `max_ejection_percent` of the hosts
  are already ejected (the check uses the count before this ejection, so one host can always
  go, as Envoy's docs say), unless `always_eject_one_host` and none is ejected;
- an ejected host returns at the first interval sweep after
  `min(base_ejection_time * backoff, max_ejection_time) + jitter`; each ejection raises `backoff`
  by one (while backoff * base < max + base) and each sweep that finds the host un-ejected
  lowers it by one;
- at each interval: success-rate ejection (hosts with >= `success_rate_request_volume`
  requests; needs >= `success_rate_minimum_hosts` such hosts; threshold mean - stdev *
  factor/1000) and failure-percentage ejection (failure% >= threshold), on the interval's
  counts, which are then reset.

Stats under `cluster.NAME.outlier_detection.`: ejections_active (gauge), ejections_total,
ejections_overflow, ejections_enforced_total, ejections_{enforced,detected}_<type>.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from proxy.model.health import OutlierDetection
from proxy.stats import Stats
from proxy.upstream.host import Host, Result

CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY = "consecutive_gateway_failure"
CONSECUTIVE_LOCAL = "consecutive_local_origin_failure"
SUCCESS_RATE = "success_rate"
SUCCESS_RATE_LOCAL = "local_origin_success_rate"
FAILURE_PERCENTAGE = "failure_percentage"
FAILURE_PERCENTAGE_LOCAL = "local_origin_failure_percentage"

_GATEWAY_CODES = (502, 503, 504)


@dataclass
class HostMonitor:
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    consecutive_local: int = 0
    ejected: bool = False
    backoff: int = 0
    ejected_at: float = 0.0
    jitter: float = 0.0
    # Counts for the current interval: (successes, total) per origin.
    external_success: int = 0
    external_total: int = 0
    local_success: int = 0
    local_total: int = 0


class OutlierDetector:
    def __init__(self, config: OutlierDetection, on_change: Callable[[Host, bool], None],
                 rng: random.Random, stats: Stats, cluster_prefix: str) -> None:
        self.config = config
        self._on_change = on_change
        self._rng = rng
        self._stats = stats
        self._prefix = cluster_prefix + "outlier_detection."
        self.monitors: dict[Host, HostMonitor] = {}
        self._host_count = 0
        self._last_tick: float | None = None
        self._stats.gauge(self._prefix + "ejections_active")

    # -- host set ----------------------------------------------------------------------------

    def monitor(self, host: Host) -> HostMonitor:
        found = self.monitors.get(host)
        if found is None:
            found = self.monitors[host] = HostMonitor()
        return found

    def set_host_count(self, count: int) -> None:
        self._host_count = count

    def remove_host(self, host: Host) -> None:
        monitor = self.monitors.pop(host, None)
        if monitor is not None and monitor.ejected:
            self._active_gauge().dec()

    @property
    def ejections_active(self) -> int:
        return self._active_gauge().value

    def _active_gauge(self):  # type: ignore[no-untyped-def]
        return self._stats.gauge(self._prefix + "ejections_active")

    # -- outcomes -----------------------------------------------------------------------------

    def report_http_status(self, host: Host, status: int, now: float) -> None:
        """An HTTP response from upstream (external origin)."""
        monitor = self.monitor(host)
        monitor.external_total += 1
        if status < 500:
            monitor.external_success += 1
            monitor.consecutive_5xx = 0
            monitor.consecutive_gateway = 0
            return
        monitor.consecutive_5xx += 1
        if status in _GATEWAY_CODES:
            monitor.consecutive_gateway += 1
        else:
            monitor.consecutive_gateway = 0
        self._check_consecutive(host, monitor, now)

    def report_result(self, host: Host, result: Result, now: float) -> None:
        """A local-origin or non-HTTP outcome (Envoy `putResult`)."""
        if not self.config.split_external_local_origin_errors:
            # Envoy `putResultNoLocalExternalSplit`: map onto HTTP codes.
            code = {
                Result.LOCAL_ORIGIN_CONNECT_SUCCESS: 200,
                Result.EXT_ORIGIN_REQUEST_SUCCESS: 200,
                Result.LOCAL_ORIGIN_TIMEOUT: 504,
                Result.LOCAL_ORIGIN_CONNECT_FAILED: 503,
                Result.EXT_ORIGIN_REQUEST_FAILED: 503,
            }.get(result)
            if code is not None:
                self.report_http_status(host, code, now)
            return
        # Envoy `putResultWithLocalExternalSplit`.
        monitor = self.monitor(host)
        if result is Result.EXT_ORIGIN_REQUEST_FAILED:
            self.report_http_status(host, 503, now)
            return
        if result is Result.EXT_ORIGIN_REQUEST_SUCCESS:
            self.report_http_status(host, 200, now)
        monitor.local_total += 1
        if result in (Result.LOCAL_ORIGIN_CONNECT_SUCCESS,
                      Result.LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL,
                      Result.EXT_ORIGIN_REQUEST_SUCCESS):
            monitor.local_success += 1
            monitor.consecutive_local = 0
            return
        monitor.consecutive_local += 1
        self._check_consecutive(host, monitor, now)

    def _check_consecutive(self, host: Host, monitor: HostMonitor, now: float) -> None:
        config = self.config
        checks = (
            (CONSECUTIVE_5XX, monitor.consecutive_5xx, config.consecutive_5xx,
             config.enforcing_consecutive_5xx),
            (CONSECUTIVE_GATEWAY, monitor.consecutive_gateway, config.consecutive_gateway_failure,
             config.enforcing_consecutive_gateway_failure),
            (CONSECUTIVE_LOCAL, monitor.consecutive_local,
             config.consecutive_local_origin_failure,
             config.enforcing_consecutive_local_origin_failure),
        )
        for kind, count, threshold, enforcing in checks:
            if threshold and count >= threshold and not monitor.ejected:
                self._eject(host, monitor, kind, enforcing, now)
                # Envoy resets the counter that fired, ejected or not.
                if kind == CONSECUTIVE_5XX:
                    monitor.consecutive_5xx = 0
                elif kind == CONSECUTIVE_GATEWAY:
                    monitor.consecutive_gateway = 0
                else:
                    monitor.consecutive_local = 0

    # -- ejection -----------------------------------------------------------------------------

    def _eject(self, host: Host, monitor: HostMonitor, kind: str, enforcing: int,
               now: float) -> None:
        self._stats.counter(f"{self._prefix}ejections_detected_{kind}").inc()
        active = self.ejections_active
        hosts = max(self._host_count, len(self.monitors), 1)
        allowed = 100.0 * active / hosts < self.config.max_ejection_percent or (
            self.config.always_eject_one_host and active == 0)
        if not allowed:
            self._stats.counter(self._prefix + "ejections_overflow").inc()
            return
        if kind in (CONSECUTIVE_5XX, SUCCESS_RATE):
            self._stats.counter(self._prefix + "ejections_total").inc()  # deprecated, kept
        if self._rng.randrange(100) >= enforcing:
            return
        self._stats.counter(self._prefix + "ejections_enforced_total").inc()
        self._stats.counter(f"{self._prefix}ejections_enforced_{kind}").inc()
        self._active_gauge().inc()
        monitor.ejected = True
        monitor.ejected_at = now
        # Envoy `ejectHost`: the backoff grows while backoff * base < max + base.
        if monitor.backoff * self.config.base_ejection_time < \
                self.config.max_ejection_time + self.config.base_ejection_time:
            monitor.backoff += 1
        jitter_max = self.config.max_ejection_time_jitter
        monitor.jitter = self._rng.uniform(0, jitter_max) if jitter_max > 0 else 0.0
        self._on_change(host, True)

    def ejection_duration(self, monitor: HostMonitor) -> float:
        config = self.config
        return min(config.base_ejection_time * monitor.backoff,
                   config.max_ejection_time) + monitor.jitter

    def _uneject(self, host: Host, monitor: HostMonitor) -> None:
        monitor.ejected = False
        # Envoy resets the 5xx and gateway counters so a few new errors do not re-eject.
        monitor.consecutive_5xx = monitor.consecutive_gateway = 0
        self._active_gauge().dec()
        self._on_change(host, False)

    def active_health_check_succeeded(self, host: Host) -> None:
        """Envoy `successful_active_health_check_uneject_host` (default true)."""
        monitor = self.monitors.get(host)
        if monitor and monitor.ejected and self.config.successful_active_health_check_uneject_host:
            self._uneject(host, monitor)

    # -- the interval timer --------------------------------------------------------------------

    def next_tick_at(self, now: float) -> float:
        if self._last_tick is None:
            self._last_tick = now
        return self._last_tick + self.config.interval

    def tick(self, now: float) -> None:
        """The interval sweep: un-eject hosts whose time is up, then statistical ejections."""
        self._last_tick = now
        for host, monitor in list(self.monitors.items()):
            if monitor.ejected:
                if now - monitor.ejected_at >= self.ejection_duration(monitor):
                    self._uneject(host, monitor)
            elif monitor.backoff > 0:
                monitor.backoff -= 1
        self._statistical_ejections(now, local=False)
        if self.config.split_external_local_origin_errors:
            self._statistical_ejections(now, local=True)
        for monitor in self.monitors.values():
            monitor.external_success = monitor.external_total = 0
            monitor.local_success = monitor.local_total = 0

    def _statistical_ejections(self, now: float, *, local: bool) -> None:
        config = self.config
        rates: list[tuple[Host, HostMonitor, float, int]] = []
        for host, monitor in self.monitors.items():
            if monitor.ejected:
                continue
            total = monitor.local_total if local else monitor.external_total
            success = monitor.local_success if local else monitor.external_success
            if total:
                rates.append((host, monitor, 100.0 * success / total, total))
        sr_enforcing = (config.enforcing_local_origin_success_rate if local
                        else config.enforcing_success_rate)
        sr_hosts = [r for r in rates if r[3] >= config.success_rate_request_volume]
        if sr_hosts and len(sr_hosts) >= config.success_rate_minimum_hosts and \
                len(self.monitors) >= config.success_rate_minimum_hosts:
            mean = sum(r[2] for r in sr_hosts) / len(sr_hosts)
            stdev = math.sqrt(sum((r[2] - mean) ** 2 for r in sr_hosts) / len(sr_hosts))
            threshold = mean - config.success_rate_stdev_factor / 1000.0 * stdev
            for host, monitor, rate, _ in sr_hosts:
                if rate < threshold and not monitor.ejected:
                    self._eject(host, monitor, SUCCESS_RATE_LOCAL if local else SUCCESS_RATE,
                                sr_enforcing, now)
        fp_enforcing = (config.enforcing_failure_percentage_local_origin if local
                        else config.enforcing_failure_percentage)
        fp_hosts = [r for r in rates if r[3] >= config.failure_percentage_request_volume]
        # Envoy detects (and counts) even when enforcing is 0; ejection then rolls the dice.
        if fp_hosts and len(fp_hosts) >= config.failure_percentage_minimum_hosts:
            for host, monitor, rate, _ in fp_hosts:
                if 100.0 - rate >= config.failure_percentage_threshold and not monitor.ejected:
                    self._eject(host, monitor,
                                FAILURE_PERCENTAGE_LOCAL if local else FAILURE_PERCENTAGE,
                                fp_enforcing, now)
