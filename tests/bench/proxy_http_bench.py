"""L7 benchmark (a script, not a test): `pointsman proxy` side by side with Envoy, both
`--concurrency 1`, same bootstrap, same backend, in one run.

    .venv/bin/python tests/bench/proxy_http_bench.py [--seconds 5] [--rounds 3]
        [--only METRIC_PREFIX ...] [--no-latency] [--scaling]

Backend: a second Envoy answering every request with a direct_response (HTTP/1.1 and h2c), so
the backend is never the bottleneck; gRPC uses grpcio servers (same for both proxies).
Measured per proxy, with issue 16's loads: HTTP/1.1 requests/s (wrk -t1 -c50), HTTP/2
requests/s (h2load one connection x50 streams, ten connections x10 streams), gRPC unary
calls/s (grpcio, 4 client threads), and CPU milliseconds per request of the proxy process
(utime+stime from /proc). Ratios are Pointsman/Envoy. Latency added at a fixed 1,000
requests/s (h2load --h1, 10 connections at 100 requests/s each, per-request times from its
--log-file): p50/p99 through the proxy minus direct to the backend. `--scaling` also runs
Pointsman with `--concurrency 2` beside `--concurrency 1` (wrk -c50, alternating) and prints
the ratio of their requests/s. Needs wrk and h2load (Debian: wrk, nghttp2-client).

A run with any non-2xx answer, socket error, failed or errored request or failed gRPC call
stops the benchmark with the tool's figures and exit status 1 (tests/bench/load_checks.py):
a proxy answering 503 quickly is not throughput.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
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


def wrk_rps(port: int, seconds: int, connections: int = 50) -> float:
    return wrk_requests_per_second(
        run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"]))


def h2load_rps(port: int, clients: int, streams: int, requests: int) -> float:
    return h2load_requests_per_second(
        run(["h2load", f"-c{clients}", f"-m{streams}", f"-n{requests}",
             f"http://127.0.0.1:{port}/"]), requests)


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


def latencies(port: int, rate: int, seconds: int, connections: int = 10) -> list[float]:
    """Per-request latency in ms of HTTP/1.1 GETs at a fixed total `rate` (h2load --rps per
    connection, one request at a time on each), from h2load's per-request log."""
    with tempfile.NamedTemporaryFile(suffix=".log") as log_file:
        completed = run(["h2load", "--h1", f"-c{connections}", "-m1",
                         f"--rps={rate // connections}", f"-D{seconds}",
                         f"--log-file={log_file.name}", f"http://127.0.0.1:{port}/"])
        lines = Path(log_file.name).read_text().splitlines()
    results = []
    for line in lines:
        _start, status, micros = line.split("\t")[:3]
        if not 200 <= int(status) < 300:
            raise LoadError(f"latency run: a request answered {status}")
        results.append(int(micros) / 1000)
    if completed.returncode != 0 or not results:
        raise LoadError(f"latency run: h2load exited {completed.returncode} with "
                        f"{len(results)} requests logged:\n{completed.stdout[-1500:]}")
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


H2_REQUESTS = 20000
Load = Callable[[dict[str, int], int], tuple[Callable[[], float], Callable[[float], float]]]
LOADS: dict[str, Load] = {
    "HTTP/1.1 wrk -c50 req/s": lambda p, s: (lambda: wrk_rps(p["h1"], s), lambda r: r * s),
    "HTTP/2 h2load -c1 -m50 req/s": lambda p, s: (
        lambda: h2load_rps(p["h2"], 1, 50, H2_REQUESTS), lambda r: H2_REQUESTS),
    "HTTP/2 h2load -c10 -m10 req/s": lambda p, s: (
        lambda: h2load_rps(p["h2"], 10, 10, H2_REQUESTS), lambda r: H2_REQUESTS),
    "gRPC unary calls/s (4 threads)": lambda p, s: (lambda: grpc_rps(p["h2"], s),
                                                    lambda r: r * s),
}


def side_by_side(proxies: dict[str, Any], ports: dict[str, dict[str, int]],
                 loads: dict[str, Load], seconds: int, rounds: int) -> None:
    """Rounds alternate which proxy goes first, so a burst of load from elsewhere on the
    machine hits both; the table gives medians and the range of per-round ratios."""
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        name: {metric: [] for metric in loads} for name in proxies}
    for round_index in range(rounds):
        order = list(proxies) if round_index % 2 == 0 else list(proxies)[::-1]
        for metric, load in loads.items():
            for name in order:
                action, requests = load(ports[name], seconds)
                samples[name][metric].append(measure(proxies[name].pid, action, requests))
    print(f"{rounds} round(s); medians; ratio = Pointsman/Envoy (per-round range)")
    print(f"{'metric':34} {'envoy':>10} {'pointsman':>10} {'ratio':>7} {'range':>11}"
          f"   CPU ms/req e / p (ratio)")
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
              f"   {envoy_cpu:.3f} / {ours_cpu:.3f} ({ours_cpu / envoy_cpu:.2f}x)")


def added_latency(proxies: dict[str, Any], ports: dict[str, dict[str, int]], backend_port: int,
                  seconds: int, rounds: int) -> None:
    """Latency added at 1,000 requests/s: direct and through each proxy, alternating."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in ("direct", *proxies)}
    for round_index in range(rounds):
        order = ["direct", *proxies] if round_index % 2 == 0 else ["direct", *proxies][::-1]
        for name in order:
            port = backend_port if name == "direct" else ports[name]["h1"]
            values = latencies(port, 1000, seconds)
            runs[name].append((percentile(values, 0.5), percentile(values, 0.99)))
    base50 = statistics.median(p50 for p50, _ in runs["direct"])
    base99 = statistics.median(p99 for _, p99 in runs["direct"])
    print(f"direct to backend at 1000 req/s: p50 {base50:.3f} ms, p99 {base99:.3f} ms "
          f"(medians of {rounds} runs)")
    for name in proxies:
        p50 = statistics.median(v for v, _ in runs[name]) - base50
        p99 = statistics.median(v for _, v in runs[name]) - base99
        print(f"added by {name:9} at 1000 req/s: p50 {p50:+.3f} ms, p99 {p99:+.3f} ms "
              f"(per run p50 {' '.join(f'{v:.2f}' for v, _ in runs[name])})")


def scaling(backend_port: int, grpc_port: int, seconds: int, rounds: int) -> None:
    """Pointsman --concurrency 2 against --concurrency 1, wrk -c50 over HTTP/1.1."""
    workers: dict[int, Any] = {}
    ports: dict[int, dict[str, int]] = {}
    try:
        for count in (1, 2):
            ports[count] = {"h1": free_port(), "h2": free_port()}
            workers[count] = Pointsman(proxy_bootstrap(ports[count], backend_port, grpc_port),
                                       name=f"bench-workers-{count}",
                                       extra_args=("--concurrency", str(count)))
        for proxy in workers.values():
            proxy.wait_ready()
        rates: dict[int, list[float]] = {1: [], 2: []}
        for round_index in range(rounds):
            for count in ((1, 2) if round_index % 2 == 0 else (2, 1)):
                rates[count].append(wrk_rps(ports[count]["h1"], seconds))
        one, two = statistics.median(rates[1]), statistics.median(rates[2])
        per_round = " ".join(f"{b / a:.2f}" for a, b in zip(rates[1], rates[2], strict=True))
        print(f"--concurrency 2 / 1, wrk -c50: {two:.0f} / {one:.0f} req/s = {two / one:.2f}x "
              f"(per round {per_round})")
    finally:
        for proxy in workers.values():
            proxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None,
                        help="metrics whose names start with one of these (e.g. HTTP/2 gRPC)")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--scaling", action="store_true")
    args = parser.parse_args()
    seconds, rounds = args.seconds, args.rounds
    loads = {metric: load for metric, load in LOADS.items()
             if args.only is None or any(metric.startswith(prefix) for prefix in args.only)}
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
        if loads:
            side_by_side(proxies, ports, loads, seconds, rounds)
        if not args.no_latency:
            added_latency(proxies, ports, backend_port, seconds, rounds)
        for proxy in proxies.values():
            proxy.stop()
        proxies.clear()
        if args.scaling:
            scaling(backend_port, grpc_server.port, seconds, rounds)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        backend.stop()
        grpc_server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(run_checked(main))
