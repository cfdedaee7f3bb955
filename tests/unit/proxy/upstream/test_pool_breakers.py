"""The connection pools' circuit-breaker steps (PoolBreakers), without sockets."""

from __future__ import annotations

import pytest

from proxy.stats import Stats
from proxy.upstream.circuit_breakers import CircuitBreaker, Resource, RoutingPriority, Thresholds
from proxy.upstream.host import Host
from proxy.upstream.pools.base import PoolBreakers, PoolOverflowError, UpstreamStream

C = "cluster.backend."


class FakeRuntime:
    def __init__(self, thresholds: Thresholds) -> None:
        self.stats = Stats()
        self.prefix = C
        self.breaker = CircuitBreaker("backend", RoutingPriority.DEFAULT, thresholds, self.stats)

    def circuit_breaker(self) -> CircuitBreaker:
        return self.breaker


def _stream() -> UpstreamStream:
    return UpstreamStream(Host("127.0.0.1", 1))


def test_pending_requests_are_counted_and_refused_past_the_limit() -> None:
    runtime = FakeRuntime(Thresholds(max_pending_requests=1))
    breakers = PoolBreakers(runtime)
    breakers.start_pending()
    assert runtime.stats.gauge(C + "upstream_rq_pending_active").value == 1
    with pytest.raises(PoolOverflowError):
        breakers.start_pending()
    assert runtime.stats.counter(C + "upstream_rq_pending_overflow").value == 1
    breakers.end_pending()
    breakers.start_pending()
    assert runtime.stats.counter(C + "upstream_rq_pending_total").value == 2
    assert runtime.stats.gauge(C + "upstream_rq_pending_active").value == 1


def test_a_pool_without_connections_still_opens_one_past_max_connections() -> None:
    runtime = FakeRuntime(Thresholds(max_connections=1))
    breakers = PoolBreakers(runtime)
    assert breakers.may_connect(pool_is_empty=False)
    assert not breakers.may_connect(pool_is_empty=False)
    assert breakers.may_connect(pool_is_empty=True)  # Envoy: pending requests must not starve
    assert runtime.stats.counter(C + "upstream_cx_overflow").value == 2
    assert runtime.breaker.in_use[Resource.CONNECTIONS] == 2
    breakers.connection_gone()
    breakers.connection_gone()
    assert runtime.breaker.in_use[Resource.CONNECTIONS] == 0


def test_a_request_slot_is_held_until_the_stream_finishes() -> None:
    runtime = FakeRuntime(Thresholds(max_requests=1))
    breakers = PoolBreakers(runtime)
    first = _stream()
    breakers.attach(first)
    assert not breakers.can_attach()
    with pytest.raises(PoolOverflowError):
        breakers.attach(_stream())
    assert runtime.stats.counter(C + "upstream_rq_active_overflow").value == 1
    first.finished = True
    first.finished = True  # released once only
    assert runtime.breaker.in_use[Resource.REQUESTS] == 0
    breakers.attach(_stream())


def test_runtimes_without_breakers_are_unlimited() -> None:
    breakers = PoolBreakers(object())
    for _ in range(3):
        breakers.start_pending()
        breakers.attach(_stream())
        assert breakers.may_connect(pool_is_empty=False)
