"""Small builders shared by the upstream unit tests (no sockets)."""

from __future__ import annotations

import random
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from protos.loader import parse_message
from proxy.model.cluster import Cluster, translate_cluster
from proxy.model.endpoint import Endpoint, Locality
from proxy.stats import Stats
from proxy.upstream.cluster import ClusterRuntime
from proxy.upstream.host import Host
from proxy.upstream.host_set import ResolvedEndpoint


def cluster_proto(**fields: Any) -> cluster_pb2.Cluster:
    body = {"name": "backend", "connect_timeout": "1s", **fields}
    return parse_message(body, cluster_pb2.Cluster)


def cluster(**fields: Any) -> Cluster:
    return translate_cluster(cluster_proto(**fields))


def static_endpoints(*ports: int, priority: int = 0, weights: tuple[int, ...] = ()) -> dict:
    lb_endpoints = []
    for index, port in enumerate(ports):
        entry: dict[str, Any] = {"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}}}
        if weights:
            entry["load_balancing_weight"] = weights[index]
        lb_endpoints.append(entry)
    return {"priority": priority, "lb_endpoints": lb_endpoints}


def hosts(count: int, *, weights: tuple[int, ...] = ()) -> list[Host]:
    return [Host(address=f"10.0.0.{index + 1}", port=80,
                 weight=weights[index] if weights else 1) for index in range(count)]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def runtime(config: Cluster, *, seed: int = 7, clock: FakeClock | None = None
            ) -> tuple[ClusterRuntime, Stats]:
    stats = Stats()
    rt = ClusterRuntime(config, stats, clock=clock or FakeClock(), rng=random.Random(seed))
    return rt, stats


def resolved(port: int, *, priority: int = 0, weight: int = 1,
             address: str = "127.0.0.1") -> ResolvedEndpoint:
    return ResolvedEndpoint(Endpoint(address, port, weight=weight), address, Locality(),
                            priority)
