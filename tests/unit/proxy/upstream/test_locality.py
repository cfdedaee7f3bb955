"""Locality-weighted load balancing: effective weights and the split they give."""

from __future__ import annotations

from collections import Counter

from proxy.model.endpoint import Endpoint, Locality
from proxy.upstream.host import HealthFlag, Host
from proxy.upstream.host_set import ResolvedEndpoint
from proxy.upstream.lb.base import LbContext
from proxy.upstream.locality import effective_weights
from tests.unit.proxy.upstream.builders import cluster, runtime

EAST, WEST, NOWHERE = Locality("us", "east"), Locality("us", "west"), Locality("us", "north")


def _host(port: int, locality: Locality, weight: int | None) -> Host:
    return Host("10.0.0.1", port, locality=locality, locality_weight=weight)


def test_effective_weight_scales_with_overprovisioned_availability() -> None:
    east = [_host(p, EAST, 2) for p in range(1, 11)]
    west = [_host(p, WEST, 1) for p in range(11, 15)]
    eligible = east[:5] + west  # east 50% healthy -> 2 * min(1, 1.4 * 0.5) = 1.4
    weights = effective_weights(eligible, east + west, 140)
    assert weights == {EAST: 2 * 0.7, WEST: 1.0}


def test_localities_without_weight_get_nothing() -> None:
    hosts = [_host(1, EAST, 1), _host(2, NOWHERE, None)]
    assert effective_weights(hosts, hosts, 140) == {EAST: 1.0}


def _resolved(port: int, locality: Locality, weight: int) -> ResolvedEndpoint:
    return ResolvedEndpoint(Endpoint("10.0.0.1", port), "10.0.0.1", locality, 0, weight)


def test_traffic_split_follows_locality_weights_not_host_counts() -> None:
    rt, _ = runtime(cluster(common_lb_config={"locality_weighted_lb_config": {}}))
    rt.set_endpoints([_resolved(1, EAST, 1)] + [_resolved(p, WEST, 3) for p in range(2, 6)])
    picks = Counter(rt.choose_host(LbContext()).locality for _ in range(400))
    assert picks == {EAST: 100, WEST: 300}  # EDF: exact 1:3 over 400 picks


def test_unhealthy_hosts_shrink_their_locality_share() -> None:
    rt, _ = runtime(cluster(common_lb_config={"locality_weighted_lb_config": {}}))
    rt.set_endpoints([_resolved(p, EAST, 1) for p in range(1, 5)]
                     + [_resolved(p, WEST, 1) for p in range(5, 9)])
    for host in rt.hosts[:3]:  # east: 1 of 4 healthy -> 1 * 1.4 * 0.25 = 0.35
        host.set_flag(HealthFlag.FAILED_ACTIVE_HC, True)
    rt.health_changed()
    picks = Counter(rt.choose_host(LbContext()).locality for _ in range(1350))
    assert picks[EAST] == 350 and picks[WEST] == 1000


def test_without_the_option_locality_weights_are_ignored() -> None:
    rt, _ = runtime(cluster())
    rt.set_endpoints([_resolved(1, EAST, 1)] + [_resolved(p, WEST, 100) for p in range(2, 4)])
    picks = Counter(rt.choose_host(LbContext()).port for _ in range(300))
    assert picks == {1: 100, 2: 100, 3: 100}
