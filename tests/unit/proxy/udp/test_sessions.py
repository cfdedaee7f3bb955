"""The udp_proxy session table (proxy.udp.sessions): no sockets, explicit time."""

from __future__ import annotations

from typing import Any

from xds.type.matcher.v3 import matcher_pb2

from protos.loader import parse_message
from proxy.model.circuit_breakers import Resource
from proxy.model.udp_matcher import translate_matcher
from proxy.model.udp_proxy import UdpHashPolicy, UdpProxyConfig
from proxy.stats import Stats
from proxy.udp.sessions import SendUpstream, SessionClosed, SessionOpened, SessionTable
from proxy.udp.stats import UdpProxyStats
from proxy.upstream.cluster import ClusterRuntime
from proxy.upstream.host import HealthFlag
from proxy.upstream.lb.base import LbContext, hash_of
from tests.unit.proxy.upstream.builders import cluster, resolved, runtime

T0 = 100.0


def table(lb_policy: str = "ROUND_ROBIN", *, hosts: int = 3, **config: Any
          ) -> tuple[SessionTable, ClusterRuntime, Stats]:
    extra = {"lb_policy": lb_policy}
    if "max_connections" in config:
        extra["circuit_breakers"] = {"thresholds": [
            {"max_connections": config.pop("max_connections")}]}
    rt, stats = runtime(cluster(**extra))
    rt.set_endpoints([resolved(1000 + index) for index in range(hosts)])
    settings = UdpProxyConfig(stat_prefix="dns", cluster="backend", **config)
    clusters = {"backend": rt}
    return SessionTable(settings, clusters.get, UdpProxyStats(stats, "dns")), rt, stats


def _value(stats: Stats, name: str) -> int:
    if name.endswith("_active"):
        return stats.gauge(name).value
    return stats.counter(name).value


def port_of(actions: list[Any]) -> int:
    sends = [action for action in actions if isinstance(action, SendUpstream)]
    assert len(sends) == 1
    return sends[0].session.host.port


def test_a_client_keeps_its_session_and_host() -> None:
    sessions, _rt, stats = table()
    first = sessions.downstream_received(("10.1.0.1", 5000), b"query", T0)
    assert [type(action) for action in first] == [SessionOpened, SendUpstream]
    for step in range(1, 5):
        again = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0 + step)
        assert [type(action) for action in again] == [SendUpstream]
        assert port_of(again) == port_of(first)
    assert _value(stats, "udp.dns.downstream_sess_total") == 1
    assert _value(stats, "udp.dns.downstream_sess_active") == 1
    assert _value(stats, "udp.dns.downstream_sess_rx_datagrams") == 5
    assert _value(stats, "udp.dns.downstream_sess_rx_bytes") == 9


def test_round_robin_spreads_sessions_over_every_host() -> None:
    sessions, _rt, _stats = table()
    ports = [port_of(sessions.downstream_received(("10.1.0.1", 5000 + index), b"q", T0))
             for index in range(6)]
    assert sorted(ports) == [1000, 1000, 1001, 1001, 1002, 1002]


def test_source_ip_hash_keeps_a_client_ip_on_the_ring_host() -> None:
    sessions, rt, _stats = table("RING_HASH", hash_policy=UdpHashPolicy(source_ip=True))
    for ip in ("10.1.0.1", "10.1.0.2", "10.1.0.3", "192.168.7.9"):
        expected = rt.choose_host(LbContext(hash_key=hash_of(ip)))
        assert expected is not None
        for port in (5000, 5001, 5002):  # new sessions (other ports), same host
            assert port_of(sessions.downstream_received((ip, port), b"q", T0)) == expected.port


def test_a_fixed_key_sends_every_client_to_one_host() -> None:
    sessions, _rt, _stats = table("MAGLEV", hash_policy=UdpHashPolicy(key="k"))
    ports = {port_of(sessions.downstream_received((f"10.1.0.{index}", 5000), b"q", T0))
             for index in range(1, 20)}
    assert len(ports) == 1


def test_a_session_ends_after_idle_timeout_and_activity_either_way_renews_it() -> None:
    sessions, _rt, stats = table(idle_timeout=60.0)
    opened = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0)
    session = opened[0].session
    assert sessions.next_expiry() == T0 + 60
    assert sessions.expire(T0 + 59.9) == []
    assert sessions.upstream_received(session, b"answer", T0 + 30)  # a reply renews it
    assert sessions.next_expiry() == T0 + 90
    assert sessions.expire(T0 + 89.9) == []
    closed = sessions.expire(T0 + 90)
    assert [(type(action), action.reason) for action in closed] == [
        (SessionClosed, "idle_timeout")]
    assert _value(stats, "udp.dns.idle_timeout") == 1
    assert _value(stats, "udp.dns.downstream_sess_active") == 0
    assert not sessions.upstream_received(session, b"late", T0 + 91)  # no longer delivered
    reopened = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0 + 100)
    assert isinstance(reopened[0], SessionOpened)
    assert _value(stats, "udp.dns.downstream_sess_total") == 2


def test_expiry_closes_only_the_idle_sessions_oldest_first() -> None:
    sessions, _rt, _stats = table(idle_timeout=10.0)
    for index in range(3):
        sessions.downstream_received(("10.1.0.1", 5000 + index), b"q", T0 + index)
    sessions.downstream_received(("10.1.0.1", 5000), b"q", T0 + 5)  # the first one again
    closed = sessions.expire(T0 + 11.5)
    assert [action.session.downstream[1] for action in closed] == [5001]
    assert len(sessions) == 2


def test_a_session_on_an_unhealthy_host_moves_to_a_healthy_one() -> None:
    sessions, rt, stats = table()
    first = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0)
    host = first[0].session.host
    host.set_flag(HealthFlag.FAILED_ACTIVE_HC, True)
    rt.health_changed()
    moved = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0 + 1)
    assert [type(action) for action in moved] == [SessionClosed, SessionOpened, SendUpstream]
    assert moved[0].reason == "unhealthy_host"
    assert port_of(moved) != host.port
    for index in range(6):  # new sessions never pick the unhealthy host
        assert port_of(sessions.downstream_received(("10.1.0.2", 6000 + index), b"q",
                                                    T0 + 2)) != host.port
    assert _value(stats, "udp.dns.downstream_sess_total") == 8


def test_per_packet_load_balancing_picks_a_host_for_every_datagram() -> None:
    sessions, _rt, stats = table(per_packet_load_balancing=True)
    ports = [port_of(sessions.downstream_received(("10.1.0.1", 5000), b"q", T0 + index))
             for index in range(6)]
    assert sorted(ports) == [1000, 1000, 1001, 1001, 1002, 1002]
    assert len(sessions) == 3  # one per (client, host)
    assert _value(stats, "udp.dns.downstream_sess_total") == 3


def test_max_connections_bounds_the_sessions_of_a_flood_of_sources() -> None:
    sessions, _rt, stats = table(max_connections=5)
    for index in range(50):
        sessions.downstream_received((f"10.2.{index // 250}.{index % 250}", 5000), b"q", T0)
    assert len(sessions) == 5
    assert _value(stats, "cluster.backend.upstream_cx_overflow") == 45
    # As Envoy 1.40: every attempt counts in sess_total, only forwarded datagrams in rx.
    assert _value(stats, "udp.dns.downstream_sess_total") == 50
    assert _value(stats, "udp.dns.downstream_sess_rx_datagrams") == 5
    sessions.expire(T0 + 60)  # the slots come back
    assert port_of(sessions.downstream_received(("10.3.0.1", 1), b"q", T0 + 61))


def test_no_cluster_and_no_host_drop_the_datagram_with_envoys_counters() -> None:
    sessions, _rt, stats = table(hosts=0)
    assert sessions.downstream_received(("10.1.0.1", 5000), b"q", T0) == []
    assert _value(stats, "cluster.backend.upstream_cx_none_healthy") == 1
    assert _value(stats, "udp.dns.downstream_sess_total") == 0
    assert _value(stats, "udp.dns.downstream_sess_rx_datagrams") == 0
    missing = SessionTable(UdpProxyConfig("dns", "nowhere"), {}.get, UdpProxyStats(stats, "dns"))
    assert missing.downstream_received(("10.1.0.1", 5000), b"q", T0) == []
    assert _value(stats, "udp.dns.downstream_sess_no_route") == 1


def test_close_all_ends_every_session_and_releases_the_breaker() -> None:
    sessions, rt, stats = table()
    for index in range(3):
        sessions.downstream_received(("10.1.0.1", 5000 + index), b"q", T0)
    closed = sessions.close_all()
    assert len(closed) == 3 and len(sessions) == 0
    assert _value(stats, "udp.dns.downstream_sess_active") == 0
    assert rt.circuit_breaker().in_use[Resource.CONNECTIONS] == 0


def test_sessions_on_a_host_that_leaves_the_cluster_end() -> None:
    sessions, rt, stats = table()
    for index in range(3):
        sessions.downstream_received(("10.1.0.1", 5000 + index), b"q", T0)
    rt.set_endpoints([resolved(1000), resolved(1001)])  # 1002 is gone
    closed = sessions.hosts_changed(rt)
    assert [(action.session.host.port, action.reason) for action in closed] == [
        (1002, "host_removed")]
    assert len(sessions) == 2
    assert _value(stats, "udp.dns.downstream_sess_active") == 2


def test_a_degraded_host_keeps_its_sessions() -> None:
    """Envoy moves a session only off an Unhealthy host (coarseHealth), not a degraded one."""
    sessions, rt, _stats = table()
    first = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0)
    first[0].session.host.set_flag(HealthFlag.DEGRADED_ACTIVE_HC, True)
    rt.health_changed()
    again = sessions.downstream_received(("10.1.0.1", 5000), b"q", T0 + 1)
    assert [type(action) for action in again] == [SendUpstream]


def test_a_matcher_routes_each_client_and_a_miss_has_no_route() -> None:
    rt, stats = runtime(cluster())
    rt.set_endpoints([resolved(1000)])
    body = {"matcher_tree": {"input": {"name": "ip", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3"
                 ".SourceIPInput"}},
        "exact_match_map": {"map": {"10.0.0.1": {"action": {"name": "r", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route",
            "cluster": "backend"}}}}}}}
    config = UdpProxyConfig("dns", "", matcher=translate_matcher(
        parse_message(body, matcher_pb2.Matcher)))
    sessions = SessionTable(config, {"backend": rt}.get, UdpProxyStats(stats, "dns"))
    assert port_of(sessions.downstream_received(("10.0.0.1", 1), b"q", T0)) == 1000
    assert sessions.downstream_received(("10.0.0.2", 1), b"q", T0) == []
    assert _value(stats, "udp.dns.downstream_sess_no_route") == 1
