"""Active health check transitions and intervals (sans-I/O, explicit results)."""

from __future__ import annotations

import random

from proxy.model.health import CheckKind, HealthCheck, TcpCheck
from proxy.upstream.health.state import HostCheckState, Transition, Verdict
from proxy.upstream.host import Health, HealthFlag, Host


def _check(**overrides: object) -> HealthCheck:
    values: dict[str, object] = {
        "kind": CheckKind.TCP, "timeout": 1.0, "interval": 5.0, "unhealthy_threshold": 3,
        "healthy_threshold": 2, "tcp": TcpCheck()}
    values.update(overrides)
    return HealthCheck(**values)  # type: ignore[arg-type]


def _new_host() -> Host:
    host = Host("10.0.0.1", 80)
    host.flags |= HealthFlag.FAILED_ACTIVE_HC | HealthFlag.PENDING_ACTIVE_HC
    return host


def test_first_success_makes_a_new_host_healthy_at_once() -> None:
    host = _new_host()
    state = HostCheckState(_check())
    assert host.health is Health.UNHEALTHY
    assert state.on_result(host, Verdict.SUCCESS) is Transition.CHANGED
    assert host.health is Health.HEALTHY
    assert not host.flags & HealthFlag.PENDING_ACTIVE_HC


def test_network_failures_count_to_unhealthy_threshold() -> None:
    host = _new_host()
    state = HostCheckState(_check())
    state.on_result(host, Verdict.SUCCESS)
    assert state.on_result(host, Verdict.NETWORK_FAILURE) is Transition.CHANGE_PENDING
    assert state.on_result(host, Verdict.TIMEOUT) is Transition.CHANGE_PENDING
    assert host.healthy
    assert state.on_result(host, Verdict.NETWORK_FAILURE) is Transition.CHANGED
    assert host.health is Health.UNHEALTHY


def test_a_success_resets_the_failure_count() -> None:
    host = _new_host()
    state = HostCheckState(_check())
    state.on_result(host, Verdict.SUCCESS)
    for _ in range(5):
        state.on_result(host, Verdict.NETWORK_FAILURE)
        state.on_result(host, Verdict.NETWORK_FAILURE)
        state.on_result(host, Verdict.SUCCESS)
    assert host.healthy


def test_active_failure_is_immediate() -> None:
    host = _new_host()
    state = HostCheckState(_check())
    state.on_result(host, Verdict.SUCCESS)
    assert state.on_result(host, Verdict.ACTIVE_FAILURE) is Transition.CHANGED
    assert not host.healthy


def test_recovery_needs_healthy_threshold_after_the_first_check() -> None:
    host = _new_host()
    state = HostCheckState(_check(unhealthy_threshold=1, healthy_threshold=3))
    state.on_result(host, Verdict.SUCCESS)
    state.on_result(host, Verdict.NETWORK_FAILURE)
    assert not host.healthy
    assert state.on_result(host, Verdict.SUCCESS) is Transition.CHANGE_PENDING
    assert state.on_result(host, Verdict.SUCCESS) is Transition.CHANGE_PENDING
    assert state.on_result(host, Verdict.SUCCESS) is Transition.CHANGED
    assert host.healthy


def test_first_check_failing_keeps_host_unhealthy_then_threshold_applies() -> None:
    host = _new_host()
    state = HostCheckState(_check(healthy_threshold=2))
    assert state.on_result(host, Verdict.NETWORK_FAILURE) is Transition.UNCHANGED
    assert not host.healthy and not host.flags & HealthFlag.PENDING_ACTIVE_HC
    assert state.on_result(host, Verdict.SUCCESS) is Transition.CHANGE_PENDING
    assert state.on_result(host, Verdict.SUCCESS) is Transition.CHANGED


def test_intervals_follow_last_result_and_pending_edges() -> None:
    check = _check(interval=5.0, unhealthy_interval=7.0, unhealthy_edge_interval=1.0,
                   healthy_edge_interval=2.0, no_traffic_interval=60.0)
    host = _new_host()
    state = HostCheckState(check)
    rng = random.Random(0)
    state.on_result(host, Verdict.SUCCESS)
    assert state.next_interval(host, had_traffic=False, rng=rng) == 60.0
    assert state.next_interval(host, had_traffic=True, rng=rng) == 5.0
    state.on_result(host, Verdict.NETWORK_FAILURE)  # pending towards unhealthy
    assert state.next_interval(host, had_traffic=True, rng=rng) == 1.0
    state.on_result(host, Verdict.NETWORK_FAILURE)
    state.on_result(host, Verdict.NETWORK_FAILURE)  # now unhealthy
    assert state.next_interval(host, had_traffic=True, rng=rng) == 7.0
    state.on_result(host, Verdict.SUCCESS)  # pending towards healthy
    assert state.next_interval(host, had_traffic=True, rng=rng) == 2.0


def test_jitter_is_bounded() -> None:
    check = _check(interval=10.0, interval_jitter=1.0, interval_jitter_percent=10,
                   initial_jitter=3.0)
    host = _new_host()
    state = HostCheckState(check)
    state.on_result(host, Verdict.SUCCESS)
    rng = random.Random(4)
    values = [state.next_interval(host, had_traffic=True, rng=rng) for _ in range(200)]
    assert all(10.0 <= v <= 12.0 for v in values)
    assert max(values) > 11.0 and min(values) < 10.5
    delays = [state.initial_delay(rng) for _ in range(100)]
    assert all(0 <= d <= 3.0 for d in delays) and max(delays) > 2.0


def test_degraded_verdict_passes_and_marks_degraded() -> None:
    host = _new_host()
    state = HostCheckState(_check())
    state.on_result(host, Verdict.DEGRADED)
    assert host.health is Health.DEGRADED
    state.on_result(host, Verdict.SUCCESS)
    assert host.health is Health.HEALTHY
