"""L7 benchmark (a script, not a test): `pointsman proxy` side by side with Envoy, both
`--concurrency 1`, same bootstrap, same backend, in one run.

    .venv/bin/python tests/bench/proxy_http_bench.py [--seconds 5] [--rounds 3]

Backend: a second Envoy answering every request with a direct_response (HTTP/1.1 and h2c), so
the backend is never the bottleneck; gRPC uses grpcio servers (same for both proxies).
Measured per proxy: HTTP/1.1 requests/s (wrk -t1 -c10), HTTP/2 requests/s (h2load one
connection x10 streams, ten connections x10 streams), gRPC unary calls/s (grpcio, 4 client
threads), latency added at a fixed 200 requests/s (p50/p99 through the proxy minus direct),
and CPU seconds per request of the proxy process (utime+stime from /proc). Ratios are
Pointsman/Envoy. Needs wrk and h2load (Debian: wrk, nghttp2-client).

A run with any non-2xx answer, socket error, failed or errored request or failed gRPC call
stops the benchmark with the tool's figures and exit status 1 (tests/bench/load_checks.py):
a proxy answering 503 quickly is not throughput.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from tests.bench.load_checks import (  # noqa: E402
    LoadError,
    h2load_requests_per_second,
    run_checked,
    wrk_requests_per_second,
)
from tests.support.bootstraps import H2_OPTIONS as H2  # noqa: E402
from tests.support.bootstraps import HCM_TYPE as HCM  # noqa: E402
from tests.support.bootstraps import ROUTER  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.grpc_backends import GrpcBackend  # noqa: E402
from tests.support.pointsman import Pointsman  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _listener(name: str, port: int, routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": name, "http_filters": [ROUTER],
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": routes}]}}}]}]}


def _cluster(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", **extra,
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                             "port_value": port}}}}]}]}}


def backend_bootstrap(port: int) -> dict[str, Any]:
    body = {"status": 200, "body": {"inline_string": "x" * 100}}
    return {"static_resources": {"listeners": [
        _listener("backend", port, [{"match": {"prefix": "/"}, "direct_response": body}])]}}


def proxy_bootstrap(ports: dict[str, int], backend: int, grpc_port: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [
            _listener("h1", ports["h1"], [{"match": {"prefix": "/"},
                                           "route": {"cluster": "backend_h1"}}]),
            _listener("h2", ports["h2"], [
                {"match": {"prefix": "/", "grpc": {}}, "route": {"cluster": "grpc"}},
                {"match": {"prefix": "/"}, "route": {"cluster": "backend_h2"}}]),
        ],
        "clusters": [_cluster("backend_h1", backend), _cluster("backend_h2", backend,
                                                               typed_extension_protocol_options=H2),
                     _cluster("grpc", grpc_port, typed_extension_protocol_options=H2)]}}


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


def wrk_rps(port: int, seconds: int) -> float:
    return wrk_requests_per_second(
        run(["wrk", "-t1", "-c10", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]))


def h2load_rps(port: int, clients: int, requests: int) -> float:
    return h2load_requests_per_second(
        run(["h2load", f"-c{clients}", "-m10", f"-n{requests}", f"http://127.0.0.1:{port}/"]),
        requests)


def grpc_rps(port: int, seconds: float, threads: int = 4) -> float:
    """Unary calls/s over `threads` channels; any failed call fails the run."""
    done = [0] * threads
    failures: list[grpc.RpcError] = []
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            while time.monotonic() < deadline and not failures:
                try:
                    unary(b"x", timeout=10)
                except grpc.RpcError as error:
                    failures.append(error)
                    return
                done[index] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    started = time.monotonic()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    if failures:
        first: Any = failures[0]
        raise LoadError(f"gRPC: {len(failures)} call(s) failed after {sum(done)} succeeded: "
                        f"{first.code().name} {first.details()!r}")
    return sum(done) / (time.monotonic() - started)


def latencies(port: int, rate: float, count: int) -> list[float]:
    """Sequential keep-alive GETs at a fixed rate; per-request latency in ms."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    results = []
    interval = 1.0 / rate
    next_at = time.monotonic()
    try:
        for _ in range(count):
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            started = time.perf_counter()
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if not 200 <= response.status < 300:
                raise LoadError(f"latency run: GET / answered {response.status}")
            results.append((time.perf_counter() - started) * 1000)
    finally:
        connection.close()
    return results


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(pid: int, action: Callable[[], float], requests: Callable[[float], float]
            ) -> tuple[float, float]:
    """(rate, CPU ms per request) for one load run against the proxy with `pid`."""
    before = cpu_seconds(pid)
    rate = action()
    used = cpu_seconds(pid) - before
    count = requests(rate)
    return rate, (used * 1000 / count if count else float("nan"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    seconds, rounds = args.seconds, args.rounds
    backend_port = free_port()
    backend = Envoy(backend_bootstrap(backend_port), name="bench-backend",
                    extra_args=("--concurrency", "1"))
    grpc_server = GrpcBackend("g").start()
    proxies: dict[str, Any] = {}
    ports: dict[str, dict[str, int]] = {}
    try:
        backend.wait_ready()
        for name, cls in (("envoy", Envoy), ("pointsman", Pointsman)):
            ports[name] = {"h1": free_port(), "h2": free_port()}
            proxies[name] = cls(proxy_bootstrap(ports[name], backend_port, grpc_server.port),
                                name=f"bench-{name}")
        for proxy in proxies.values():
            proxy.wait_ready()
        h2_requests = 20000
        loads: dict[str, Callable[[dict[str, int]], tuple[Callable[[], float],
                                                          Callable[[float], float]]]] = {
            "HTTP/1.1 wrk -c10 req/s": lambda p: (lambda: wrk_rps(p["h1"], seconds),
                                                  lambda r: r * seconds),
            "HTTP/2 h2load -c1 -m10 req/s": lambda p: (lambda: h2load_rps(p["h2"], 1, h2_requests),
                                                       lambda r: h2_requests),
            "HTTP/2 h2load -c10 -m10 req/s": lambda p: (
                lambda: h2load_rps(p["h2"], 10, h2_requests), lambda r: h2_requests),
            "gRPC unary calls/s (4 threads)": lambda p: (lambda: grpc_rps(p["h2"], seconds),
                                                         lambda r: r * seconds),
        }
        # Rounds alternate which proxy goes first, so a burst of load from elsewhere on the
        # machine hits both; the table gives medians and the range of per-round ratios.
        samples: dict[str, dict[str, list[tuple[float, float]]]] = {
            name: {metric: [] for metric in loads} for name in proxies}
        for round_index in range(rounds):
            order = list(proxies) if round_index % 2 == 0 else list(proxies)[::-1]
            for metric, load in loads.items():
                for name in order:
                    action, requests = load(ports[name])
                    samples[name][metric].append(measure(proxies[name].pid, action, requests))
        direct = latencies(backend_port, 200, 400)
        print(f"{rounds} round(s); medians; ratio = Pointsman/Envoy (per-round range)")
        print(f"{'metric':34} {'envoy':>10} {'pointsman':>10} {'ratio':>7} {'range':>11}"
              f"   CPU ms/req e / p")
        for metric in loads:
            envoy_runs, ours_runs = samples["envoy"][metric], samples["pointsman"][metric]
            envoy_rate = statistics.median(r for r, _ in envoy_runs)
            ours_rate = statistics.median(r for r, _ in ours_runs)
            envoy_cpu = statistics.median(c for _, c in envoy_runs)
            ours_cpu = statistics.median(c for _, c in ours_runs)
            ratios = [o[0] / e[0] for o, e in zip(ours_runs, envoy_runs, strict=True) if e[0]]
            ratio = ours_rate / envoy_rate if envoy_rate else float("nan")
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else "-"
            print(f"{metric:34} {envoy_rate:10.0f} {ours_rate:10.0f} {ratio:7.2f} {spread:>11}"
                  f"   {envoy_cpu:.3f} / {ours_cpu:.3f}")
        base50, base99 = percentile(direct, 0.5), percentile(direct, 0.99)
        print(f"direct to backend at 200 req/s: p50 {base50:.3f} ms, p99 {base99:.3f} ms")
        for name in proxies:
            through = latencies(ports[name]["h1"], 200, 400)
            print(f"added by {name:9} at 200 req/s: p50 "
                  f"{percentile(through, 0.5) - base50:+.3f} ms, p99 "
                  f"{percentile(through, 0.99) - base99:+.3f} ms "
                  f"(mean {statistics.mean(through):.3f} ms)")
    finally:
        for proxy in proxies.values():
            proxy.stop()
        backend.stop()
        grpc_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run_checked(main))
