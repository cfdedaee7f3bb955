"""ClusterRuntime: priority failover, panic, health changes, accounting and the admin view."""

from __future__ import annotations

from collections import Counter

from proxy.upstream.host import Health, HealthFlag, Result
from proxy.upstream.lb.base import LbContext
from tests.unit.proxy.upstream.builders import (
    FakeClock,
    cluster,
    resolved,
    runtime,
    static_endpoints,
)

C = "cluster.backend."


def _two_priorities(p0: int, p1: int, **extra: object):
    config = cluster(load_assignment={"cluster_name": "backend", "endpoints": [
        static_endpoints(*range(1000, 1000 + p0)),
        static_endpoints(*range(2000, 2000 + p1), priority=1)]}, **extra)
    rt, stats = runtime(config)
    rt.set_endpoints([resolved(1000 + i) for i in range(p0)]
                     + [resolved(2000 + i, priority=1) for i in range(p1)])
    return rt, stats


def _priority_share(rt, picks: int = 4000) -> Counter[int]:
    return Counter(rt.choose_host(LbContext()).priority for _ in range(picks))


def _fail(rt, count: int, priority: int = 0) -> None:
    for host in [h for h in rt.hosts if h.priority == priority][:count]:
        host.set_flag(HealthFlag.FAILED_ACTIVE_HC, True)
    rt.health_changed()


def test_all_traffic_to_p0_while_healthy_enough() -> None:
    rt, stats = _two_priorities(10, 10)
    assert _priority_share(rt)[1] == 0
    _fail(rt, 2)  # 80% healthy * 1.4 > 100%: no spill
    assert _priority_share(rt)[1] == 0
    assert stats.gauge(C + "membership_healthy").value == 18
    assert stats.gauge(C + "membership_total").value == 20


def test_failover_spills_to_p1_with_overprovisioning_factor() -> None:
    rt, _ = _two_priorities(10, 10)
    _fail(rt, 5)  # 50% * 1.4 = 70% stays on P0
    assert rt.host_set.load().healthy == (70, 30)
    share = _priority_share(rt)
    assert 0.66 < share[0] / 4000 < 0.74
    # Traffic kept on P0 only goes to its healthy hosts (not in panic at exactly 50%).
    picked = {rt.choose_host(LbContext()) for _ in range(500)}
    assert all(host.healthy for host in picked)


def test_panic_routes_to_all_hosts_of_the_priority() -> None:
    rt, stats = _two_priorities(10, 0)
    _fail(rt, 8)  # 20% healthy < 50% panic threshold
    picked = Counter(rt.choose_host(LbContext()) for _ in range(2000))
    assert len(picked) == 10  # unhealthy hosts are used too
    assert stats.counter(C + "lb_healthy_panic").value == 2000


def test_panic_threshold_zero_means_no_healthy_upstream() -> None:
    rt, _ = _two_priorities(3, 0, common_lb_config={"healthy_panic_threshold": {"value": 0}})
    _fail(rt, 3)
    assert rt.choose_host(LbContext()) is None


def test_degraded_hosts_only_take_leftover_load() -> None:
    rt, _ = _two_priorities(4, 0)
    for host in rt.hosts[:3]:
        host.set_flag(HealthFlag.DEGRADED_EDS_HEALTH, True)
    rt.health_changed()
    # 1/4 healthy -> 35% to the healthy host, the rest to the degraded ones.
    load = rt.host_set.load()
    assert load.healthy == (35,) and load.degraded == (65,)
    picks = Counter(rt.choose_host(LbContext()).health for _ in range(4000))
    assert 0.30 < picks[Health.HEALTHY] / 4000 < 0.40


def test_hash_key_picks_priority_and_host_consistently() -> None:
    rt, _ = _two_priorities(5, 5, lb_policy="RING_HASH")
    _fail(rt, 3)
    for key in (1, 99, 12345678901234, 2**63 + 5):
        first = rt.choose_host(LbContext(hash_key=key))
        assert all(rt.choose_host(LbContext(hash_key=key)) is first for _ in range(5))


def test_new_hosts_of_a_health_checked_cluster_start_unhealthy_and_stay_on_update() -> None:
    config = cluster(health_checks=[{"timeout": "1s", "interval": "1s",
                                     "unhealthy_threshold": 2, "healthy_threshold": 2,
                                     "tcp_health_check": {}}])
    rt, _ = runtime(config)
    rt.set_endpoints([resolved(1), resolved(2)])
    assert not rt.initialized
    assert all(host.flags & HealthFlag.PENDING_ACTIVE_HC for host in rt.hosts)
    first = rt.hosts[0]
    first.flags = HealthFlag.NONE
    rt.set_endpoints([resolved(1), resolved(3, weight=5)])
    assert rt.hosts[0] is first and first.healthy  # kept its state
    assert [h.port for h in rt.hosts] == [1, 3] and rt.hosts[1].weight == 5


def test_request_accounting_and_outlier_feed() -> None:
    clock = FakeClock()
    config = cluster(outlier_detection={"consecutive_5xx": 2})
    rt, stats = runtime(config, clock=clock)
    rt.set_endpoints([resolved(1), resolved(2), resolved(3)])
    host = rt.hosts[0]
    rt.request_started(host)
    assert host.active_requests == 1
    rt.request_finished(host, http_status=503)
    rt.request_started(host)
    rt.request_finished(host, http_status=500)
    assert host.flags & HealthFlag.FAILED_OUTLIER_CHECK
    assert stats.counter(C + "upstream_rq_503").value == 1
    assert stats.counter(C + "upstream_rq_5xx").value == 2
    assert stats.gauge(C + "upstream_rq_active").value == 0
    assert stats.gauge(C + "outlier_detection.ejections_active").value == 1
    assert host not in {rt.choose_host(LbContext()) for _ in range(100)}
    clock.now += 30
    rt.outlier.tick(clock.now)
    assert not host.flags & HealthFlag.FAILED_OUTLIER_CHECK


def test_code_stats_count_completed_requests_and_skip_retried_responses() -> None:
    config = cluster(outlier_detection={"consecutive_5xx": 2})
    rt, stats = runtime(config, clock=FakeClock())
    rt.set_endpoints([resolved(1)])
    host = rt.hosts[0]
    rt.request_started(host)
    rt.request_finished(host, http_status=503, charge_code=False)  # the router retries it
    rt.request_started(host)
    rt.request_finished(host, http_status=503)
    rt.request_started(host)
    rt.request_finished(host)  # no HTTP outcome: no code stats
    assert stats.counter(C + "upstream_rq_completed").value == 1
    assert stats.counter(C + "upstream_rq_503").value == 1
    assert stats.gauge(C + "upstream_rq_active").value == 0
    # the retried 503 still counted for outlier detection: two in a row ejected the host
    assert host.flags & HealthFlag.FAILED_OUTLIER_CHECK


def test_connection_accounting() -> None:
    rt, stats = runtime(cluster())
    rt.set_endpoints([resolved(1)])
    host = rt.hosts[0]
    rt.connection_opened(host)
    rt.connection_failed(host, timeout=True)
    rt.connection_closed(host, local=False, with_active_request=True)
    assert stats.counter(C + "upstream_cx_total").value == 2
    # Envoy counts a failed connect as destroyed too: a timed-out one by us (local).
    assert stats.counter(C + "upstream_cx_destroy").value == 2
    assert stats.counter(C + "upstream_cx_destroy_local").value == 1
    assert stats.counter(C + "upstream_cx_destroy_remote").value == 1
    assert stats.counter(C + "upstream_cx_destroy_remote_with_active_rq").value == 1
    assert stats.counter(C + "upstream_cx_destroy_with_active_rq").value == 1
    assert stats.counter(C + "upstream_cx_destroy_local_with_active_rq").value == 0
    assert stats.counter(C + "upstream_cx_connect_fail").value == 1
    assert stats.counter(C + "upstream_cx_connect_timeout").value == 1
    assert stats.gauge(C + "upstream_cx_active").value == 0
    assert rt.had_traffic


def test_report_without_outlier_detection_is_a_no_op() -> None:
    rt, _ = runtime(cluster())
    rt.set_endpoints([resolved(1)])
    rt.report(rt.hosts[0], result=Result.LOCAL_ORIGIN_CONNECT_FAILED)
    assert rt.hosts[0].healthy


def test_admin_view_lists_hosts() -> None:
    rt, _ = runtime(cluster())
    rt.set_endpoints([resolved(1, weight=3)])
    view = rt.admin_view()
    host = view["host_statuses"][0]
    assert host["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 1}
    assert host["weight"] == 3 and host["health"] == "healthy"
    assert host["health_flags"] == ["healthy"]
    assert view["priority_load"] == [100]


def test_reconfigure_drops_verdicts_of_removed_checkers() -> None:
    hc = {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
          "tcp_health_check": {}}
    rt, stats = runtime(cluster(health_checks=[hc], outlier_detection={"consecutive_5xx": 1}))
    rt.set_endpoints([resolved(1), resolved(2)])
    first, second = rt.hosts
    second.flags = HealthFlag.NONE
    rt.report(second, http_status=500)
    assert second.flags & HealthFlag.FAILED_OUTLIER_CHECK
    rt.reconfigure(cluster())  # no health checks, no outlier detection any more
    assert first.healthy and second.healthy
    assert rt.outlier is None
    assert stats.gauge(C + "outlier_detection.ejections_active").value == 0
    assert stats.gauge(C + "membership_healthy").value == 2


def test_healthy_host_gone_from_eds_stays_until_it_fails_a_check() -> None:
    hc = {"timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
          "tcp_health_check": {}}
    rt, stats = runtime(cluster(type="EDS", eds_cluster_config={}, health_checks=[hc]))
    rt.set_endpoints([resolved(1), resolved(2), resolved(3)])
    for host in rt.hosts[:2]:
        host.flags = HealthFlag.NONE  # 1 and 2 passed their checks, 3 has not
    kept = rt.hosts[1]
    rt.set_endpoints([resolved(1)])
    assert [h.port for h in rt.hosts] == [1, 2]  # 3 (never healthy) went at once
    assert kept.flags & HealthFlag.PENDING_DYNAMIC_REMOVAL and kept.healthy
    assert kept in {rt.choose_host() for _ in range(50)}  # still routed to
    rt.set_endpoints([resolved(1), resolved(2)])  # back in discovery: no longer pending
    assert not kept.flags & HealthFlag.PENDING_DYNAMIC_REMOVAL
    rt.set_endpoints([resolved(1)])
    kept.set_flag(HealthFlag.FAILED_ACTIVE_HC, True)
    rt.health_changed()
    assert [h.port for h in rt.hosts] == [1]
    assert stats.gauge(C + "membership_total").value == 1


def test_without_health_checks_removed_hosts_go_at_once() -> None:
    rt, _ = runtime(cluster(type="EDS", eds_cluster_config={}))
    rt.set_endpoints([resolved(1), resolved(2)])
    rt.set_endpoints([resolved(1)])
    assert [h.port for h in rt.hosts] == [1]
