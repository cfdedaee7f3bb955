"""The sidecar's cost of one config change, state of the world vs delta (a script, not a test).

A sidecar in a mesh of S services holds S clusters (EDS) with their endpoints and S
listeners. One cluster, one listener or one endpoint set changes; measured in-process on
proxy.server.Server (no sockets: serve_traffic=False, the --concurrency parent), per update:
- SotW: `Server.apply` of the whole set (what a SotW response carries for CDS/LDS; EDS is
  one resource either way);
- delta: `Server.apply_delta` of the one changed resource;
- with workers: the same, plus the state-of-the-world message the parent fans out to the
  workers (proxy.workers.update_message), which a delta turns into the whole set for LDS/CDS.

    .venv/bin/python tests/bench/sidecar_xds_apply.py              # S = 100 and 1000
    .venv/bin/python tests/bench/sidecar_xds_apply.py --services 1000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2

from protos.loader import pack_any, parse_message
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER
from proxy.bootstrap import translate_bootstrap
from proxy.server import Server
from proxy.workers import update_message
from proxy.xds.delta import DeltaResource

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def cluster(index: int, timeout: str = "1s") -> Any:
    return pack_any(parse_message({
        "name": f"svc-{index}", "type": "EDS", "connect_timeout": timeout,
        "eds_cluster_config": {"eds_config": {"ads": {}}}}, cluster_pb2.Cluster))


def assignment(index: int, last_octet: int = 1) -> Any:
    return pack_any(parse_message({"cluster_name": f"svc-{index}", "endpoints": [{
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": f"10.{index // 250}.{index % 250}.{last_octet}", "port_value": 80}}}}
            for _ in range(1)]}]}, endpoint_pb2.ClusterLoadAssignment))


def listener(index: int, cluster_index: int | None = None) -> Any:
    target = index if cluster_index is None else cluster_index
    return pack_any(parse_message({
        "name": f"out-{index}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 20000 + index}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.tcp_proxy",
                                        "typed_config": {"@type": TCP_PROXY,
                                                         "stat_prefix": f"out-{index}",
                                                         "cluster": f"svc-{target}"}}]}]},
        listener_pb2.Listener))


def loaded(services: int, fan_out: bool) -> Server:
    server = Server(translate_bootstrap(bootstrap_pb2.Bootstrap()), serve_traffic=False)
    server.apply(CLUSTER, "0", tuple(cluster(i) for i in range(services)))
    server.apply(CLUSTER_LOAD_ASSIGNMENT, "0", tuple(assignment(i) for i in range(services)))
    server.apply(LISTENER, "0", tuple(listener(i) for i in range(services)))
    if fan_out:  # what proxy.workers.WorkerPool._fan_out builds for each update
        server.update_observers.append(lambda *update: update_message(*update))
    return server


def timed(action: Callable[[int], None], rounds: int) -> float:
    """Median wall time in ms of `rounds` calls, after one warm-up call."""
    action(0)
    times = []
    for round_ in range(1, rounds + 1):
        start = time.perf_counter()
        action(round_)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(services: int, rounds: int, fan_out: bool) -> dict[str, tuple[float, float]]:
    server = loaded(services, fan_out)
    every_cluster = [cluster(i) for i in range(services)]
    every_listener = [listener(i) for i in range(services)]

    def sotw_cluster(round_: int) -> None:
        every_cluster[0] = cluster(0, f"{round_ + 1}s")
        server.apply(CLUSTER, str(round_), tuple(every_cluster))

    def delta_cluster(round_: int) -> None:
        server.apply_delta(CLUSTER, str(round_), (
            DeltaResource("svc-0", str(round_), cluster(0, f"{round_ + 1}s"), 0),), ())

    def sotw_listener(round_: int) -> None:
        every_listener[0] = listener(0, round_ % services)
        server.apply(LISTENER, str(round_), tuple(every_listener))

    def delta_listener(round_: int) -> None:
        server.apply_delta(LISTENER, str(round_), (
            DeltaResource("out-0", str(round_), listener(0, round_ % services), 0),), ())

    def sotw_endpoints(round_: int) -> None:
        server.apply(CLUSTER_LOAD_ASSIGNMENT, str(round_), (assignment(0, round_ % 200),))

    def delta_endpoints(round_: int) -> None:
        server.apply_delta(CLUSTER_LOAD_ASSIGNMENT, "", (
            DeltaResource("svc-0", str(round_), assignment(0, round_ % 200), 0),), ())

    return {"one cluster": (timed(sotw_cluster, rounds), timed(delta_cluster, rounds)),
            "one listener": (timed(sotw_listener, rounds), timed(delta_listener, rounds)),
            "one endpoint set": (timed(sotw_endpoints, rounds), timed(delta_endpoints, rounds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, action="append")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| services | change | workers | SotW apply (ms) | delta apply (ms) |")
    print("| --- | --- | --- | --- | --- |")
    for services in args.services or [100, 1000]:
        for fan_out in (False, True):
            for change, (sotw, delta) in measure(services, args.rounds, fan_out).items():
                print(f"| {services:,} | {change} | {'fan-out' if fan_out else 'none'} "
                      f"| {sotw:.1f} | {delta:.1f} |", flush=True)


if __name__ == "__main__":
    main()
