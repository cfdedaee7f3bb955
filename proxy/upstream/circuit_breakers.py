"""Circuit breakers per routing priority (Envoy: intro/arch_overview/upstream/circuit_breaking).

Each cluster has one set of limits per routing priority (DEFAULT, HIGH): max_connections,
max_pending_requests, max_requests, max_retries (Envoy defaults 1024/1024/1024/3). Callers
`try_acquire` a resource before using it and `release` it after; a refused acquire is counted
with Envoy's overflow stat and returns False at once (fail fast, no queueing):

  connections       -> cluster.NAME.upstream_cx_overflow
  pending requests  -> cluster.NAME.upstream_rq_pending_overflow
  requests          -> cluster.NAME.upstream_rq_active_overflow (what Envoy 1.40 counts
                       when max_requests refuses a request; checked against the binary in
                       tests/conformance/proxy/http/test_circuit_breakers_vs_envoy.py)
  retries           -> cluster.NAME.upstream_rq_retry_overflow

While a resource is at its limit the gauge `circuit_breakers.PRIORITY.{cx,rq_pending,rq,
rq_retry}_open` is 1; with `track_remaining`, `remaining_{cx,pending,rq,retries}` are kept.
"""

from __future__ import annotations

from proxy.model.circuit_breakers import (
    CircuitBreakers,
    Resource,
    RoutingPriority,
    Thresholds,
    translate_circuit_breakers,
)
from proxy.stats import Gauge, Stats

__all__ = ["CircuitBreaker", "CircuitBreakers", "Resource", "RoutingPriority", "Thresholds",
           "translate_circuit_breakers"]


_OVERFLOW_STAT = {
    Resource.CONNECTIONS: "upstream_cx_overflow",
    Resource.PENDING_REQUESTS: "upstream_rq_pending_overflow",
    Resource.REQUESTS: "upstream_rq_active_overflow",
    Resource.RETRIES: "upstream_rq_retry_overflow",
}
_REMAINING_STAT = {
    Resource.CONNECTIONS: "remaining_cx",
    Resource.PENDING_REQUESTS: "remaining_pending",
    Resource.REQUESTS: "remaining_rq",
    Resource.RETRIES: "remaining_retries",
}


class CircuitBreaker:
    """The live counts for one cluster and one routing priority."""

    def __init__(self, cluster_name: str, priority: RoutingPriority, thresholds: Thresholds,
                 stats: Stats) -> None:
        self.thresholds = thresholds
        self._prefix = f"cluster.{cluster_name}."
        self._breaker_prefix = f"{self._prefix}circuit_breakers.{priority.name.lower()}."
        self._stats = stats
        self.in_use: dict[Resource, int] = dict.fromkeys(Resource, 0)
        # Per resource: (limit, its _open gauge, its remaining_ gauge or None), built when the
        # thresholds change, so that taking and giving back a unit (per request) only adds.
        self._slots: dict[Resource, tuple[int, Gauge, Gauge | None]] = {}
        self.retune(thresholds)

    def try_acquire(self, resource: Resource) -> bool:
        """Take one unit of `resource`, or count the overflow and return False."""
        limit, is_open, remaining = self._slots[resource]
        used = self.in_use[resource]
        if used >= limit:
            self._stats.counter(self._prefix + _OVERFLOW_STAT[resource]).inc()
            return False
        used += 1
        self.in_use[resource] = used
        is_open.value = 1 if used >= limit else 0
        if remaining is not None:
            remaining.value = limit - used
        return True

    def force_acquire(self, resource: Resource) -> None:
        """Take one unit even past the limit (Envoy opens a pool's first connection even when
        max_connections is used up elsewhere, so its pending requests cannot starve)."""
        self.in_use[resource] += 1
        self._update_gauges(resource)

    def release(self, resource: Resource) -> None:
        used = self.in_use[resource]
        if used <= 0:
            raise RuntimeError(f"circuit breaker {resource.name} released more than acquired")
        used -= 1
        self.in_use[resource] = used
        limit, is_open, remaining = self._slots[resource]
        is_open.value = 1 if used >= limit else 0
        if remaining is not None:
            remaining.value = max(0, limit - used)

    def can_acquire(self, resource: Resource) -> bool:
        return self.in_use[resource] < self._slots[resource][0]

    def retune(self, thresholds: Thresholds) -> None:
        """New limits (at creation and from a cluster update); counts in use carry over."""
        self.thresholds = thresholds
        for resource in Resource:
            remaining = (self._stats.gauge(self._breaker_prefix + _REMAINING_STAT[resource])
                         if thresholds.track_remaining else None)
            self._slots[resource] = (
                thresholds.limit(resource),
                self._stats.gauge(f"{self._breaker_prefix}{resource.value}_open"), remaining)
            self._update_gauges(resource)

    def _update_gauges(self, resource: Resource) -> None:
        limit, is_open, remaining = self._slots[resource]
        used = self.in_use[resource]
        is_open.set(1 if used >= limit else 0)
        if remaining is not None:
            remaining.set(max(0, limit - used))

    def __repr__(self) -> str:
        used = ", ".join(f"{r.value}={n}/{self.thresholds.limit(r)}"
                         for r, n in self.in_use.items())
        return f"CircuitBreaker({self._breaker_prefix.rstrip('.')}: {used})"
