"""LbPolicy -> picker factory, with each policy's config bound in."""

from __future__ import annotations

import functools

from proxy.model.cluster import Cluster, LbPolicy
from proxy.upstream.lb.base import PickerFactory
from proxy.upstream.lb.least_request import LeastRequestPicker
from proxy.upstream.lb.maglev import MaglevPicker
from proxy.upstream.lb.random_lb import RandomPicker
from proxy.upstream.lb.ring_hash import RingHashPicker
from proxy.upstream.lb.round_robin import RoundRobinPicker


def picker_factory(cluster: Cluster) -> PickerFactory:
    """A callable `(hosts, rng) -> Picker` for the cluster's lb_policy and its config."""
    policy = cluster.lb_policy
    if policy is LbPolicy.ROUND_ROBIN:
        return RoundRobinPicker
    if policy is LbPolicy.RANDOM:
        return RandomPicker
    if policy is LbPolicy.LEAST_REQUEST:
        return functools.partial(
            LeastRequestPicker, choice_count=cluster.least_request.choice_count,
            active_request_bias=cluster.least_request.active_request_bias)
    if policy is LbPolicy.RING_HASH:
        return functools.partial(
            RingHashPicker, minimum_ring_size=cluster.ring_hash.minimum_ring_size,
            maximum_ring_size=cluster.ring_hash.maximum_ring_size,
            use_hostname_for_hashing=cluster.ring_hash.use_hostname_for_hashing)
    if policy is LbPolicy.MAGLEV:
        return functools.partial(
            MaglevPicker, table_size=cluster.maglev.table_size,
            use_hostname_for_hashing=cluster.maglev.use_hostname_for_hashing)
    raise AssertionError(f"unhandled lb policy {policy}")
