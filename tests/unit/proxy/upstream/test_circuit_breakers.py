"""Circuit breakers: limits per routing priority, overflow counted with Envoy's stat names."""

from __future__ import annotations

import pytest

from protos.errors import ConfigError
from proxy.stats import Stats
from proxy.upstream.circuit_breakers import (
    CircuitBreaker,
    Resource,
    RoutingPriority,
    Thresholds,
)
from tests.unit.proxy.upstream.builders import cluster, runtime

C = "cluster.backend."


def test_defaults_are_envoys() -> None:
    thresholds = Thresholds()
    assert (thresholds.max_connections, thresholds.max_pending_requests,
            thresholds.max_requests, thresholds.max_retries) == (1024, 1024, 1024, 3)


@pytest.mark.parametrize(("resource", "stat"), [
    (Resource.CONNECTIONS, "upstream_cx_overflow"),
    (Resource.PENDING_REQUESTS, "upstream_rq_pending_overflow"),
    (Resource.REQUESTS, "upstream_rq_active_overflow"),
    (Resource.RETRIES, "upstream_rq_retry_overflow"),
])
def test_overflow_is_refused_and_counted(resource: Resource, stat: str) -> None:
    stats = Stats()
    breaker = CircuitBreaker("backend", RoutingPriority.DEFAULT,
                             Thresholds(2, 2, 2, 2), stats)
    assert breaker.try_acquire(resource) and breaker.try_acquire(resource)
    gauge = f"{C}circuit_breakers.default.{resource.value}_open"
    assert stats.gauge(gauge).value == 1
    assert not breaker.try_acquire(resource)
    assert stats.counter(C + stat).value == 1
    breaker.release(resource)
    assert stats.gauge(gauge).value == 0
    assert breaker.try_acquire(resource)


def test_release_without_acquire_is_a_bug() -> None:
    breaker = CircuitBreaker("backend", RoutingPriority.DEFAULT, Thresholds(), Stats())
    with pytest.raises(RuntimeError):
        breaker.release(Resource.REQUESTS)


def test_thresholds_per_priority_from_config() -> None:
    config = cluster(circuit_breakers={"thresholds": [
        {"priority": "DEFAULT", "max_requests": 1, "track_remaining": True},
        {"priority": "HIGH", "max_requests": 3},
    ]})
    rt, stats = runtime(config)
    default = rt.circuit_breaker(RoutingPriority.DEFAULT)
    high = rt.circuit_breaker(RoutingPriority.HIGH)
    assert default.try_acquire(Resource.REQUESTS)
    assert stats.gauge(C + "circuit_breakers.default.remaining_rq").value == 0
    assert not default.try_acquire(Resource.REQUESTS)
    assert all(high.try_acquire(Resource.REQUESTS) for _ in range(3))
    assert not high.try_acquire(Resource.REQUESTS)
    assert stats.counter(C + "upstream_rq_active_overflow").value == 2


def test_unsupported_breaker_fields_are_named() -> None:
    with pytest.raises(ConfigError, match="retry_budget"):
        cluster(circuit_breakers={"thresholds": [{"retry_budget": {}}]})
    with pytest.raises(ConfigError, match="per_host_thresholds"):
        cluster(circuit_breakers={"per_host_thresholds": [{"max_connections": 1}]})
    with pytest.raises(ConfigError, match="duplicate"):
        cluster(circuit_breakers={"thresholds": [{"priority": "HIGH"}, {"priority": "HIGH"}]})
