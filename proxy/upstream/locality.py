"""Locality-weighted load balancing (Envoy arch_overview/upstream/load_balancing/locality_weight).

With `common_lb_config.locality_weighted_lb_config`, a pick inside a priority first chooses a
locality by weighted round robin (EDF) over effective weights, then a host in that locality with
the cluster's LB policy. Envoy `HostSetImpl::effectiveLocalityWeight`:

    effective = locality_weight * min(1, overprovisioning_factor / 100 * eligible / all)

where `eligible` is the locality's healthy (or degraded) hosts and `all` all its hosts. Localities
without a weight, or with no eligible host, get no traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.model.endpoint import Locality
from proxy.upstream.host import Host
from proxy.upstream.lb.round_robin import EdfScheduler


def group_by_locality(hosts: Sequence[Host]) -> dict[Locality, list[Host]]:
    groups: dict[Locality, list[Host]] = {}
    for host in hosts:
        groups.setdefault(host.locality, []).append(host)
    return groups


def effective_weights(eligible: Sequence[Host], all_hosts: Sequence[Host],
                      overprovisioning_factor: int) -> dict[Locality, float]:
    """Locality -> effective weight (> 0 only), for the eligible subset of one priority."""
    totals = group_by_locality(all_hosts)
    weights: dict[Locality, float] = {}
    for locality, members in group_by_locality(eligible).items():
        weight = members[0].locality_weight
        if not weight:
            continue
        ratio = len(members) / len(totals[locality])
        effective = weight * min(1.0, overprovisioning_factor / 100.0 * ratio)
        if effective > 0:
            weights[locality] = effective
    return weights


class LocalityScheduler:
    """EDF over localities by effective weight; `pick()` is None when none can take traffic."""

    def __init__(self, weights: dict[Locality, float]) -> None:
        self._scheduler = EdfScheduler[Locality](list(weights.items())) if weights else None

    def pick(self) -> Locality | None:
        return self._scheduler.pick_and_readd() if self._scheduler is not None else None
