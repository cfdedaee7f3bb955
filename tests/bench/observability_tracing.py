"""Tracing overhead benchmark (a script, not a test): requests/s with tracing off and with
tracing on at 100% sampling, for `pointsman proxy` and Envoy side by side, same bootstrap.

    .venv/bin/python tests/bench/observability_tracing.py [--seconds 5] [--spawn-upstream-span]

Backend: an Envoy answering with a direct_response. Collector: an in-process fake OTLP/gRPC
collector that only counts bytes (decoding would steal CPU from the proxies on 2 cores).
Load: wrk -t1 -c10 over HTTP/1.1 keep-alive. Both proxies run `--concurrency 1`. The traced and
the untraced proxy run at the same time and wrk alternates between them, round by round: the
machine is shared, and sequential runs measured other people's load as much as tracing.
Target (issue 5): overhead under 15%. A run with non-2xx answers or socket errors is not
measured: the proxy's figures are dropped and the script exits 1 naming it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import LoadError, wrk_requests_per_second  # noqa: E402
from tests.conformance.proxy.observability.http_support import (  # noqa: E402
    bootstrap,
    cluster,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.integration.proxy.observability.collector import FakeCollector  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.pointsman import Pointsman  # noqa: E402
from tests.support.ports import free_port, wait_for_port  # noqa: E402


def backend_bootstrap(port: int) -> dict[str, Any]:
    listener = http_listener("backend", port, {
        **hcm("unused"), "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"], "routes": [{
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": "x" * 100}}}]}]}})
    return {"static_resources": {"listeners": [listener]}}


def proxy_bootstrap(port: int, backend: int, collector: int, traced: bool,
                    spawn: bool) -> dict[str, Any]:
    tracing = opentelemetry_tracing("otel", "bench", spawn_upstream_span=spawn) if traced \
        else None
    return bootstrap([http_listener("ingress", port, hcm("backend", tracing=tracing))],
                     [cluster("backend", backend), grpc_cluster("otel", collector)])


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children (/proc/PID/stat fields 14-17)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def wrk(port: int, seconds: int) -> float:
    return wrk_requests_per_second(subprocess.run(
        ["wrk", "-t1", "-c10", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, check=False))


def start_proxy(kind: str, config: dict[str, Any], port: int, name: str) -> Any:
    if kind == "envoy":
        config = {**config, "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            "tracing.opentelemetry.flush_interval_ms": 1000}}]}}
        proxy: Any = Envoy(config, name=name)
    else:
        proxy = Pointsman(config, name=name)
    proxy.wait_ready()
    wait_for_port(port)
    return proxy


def measure_round(proxy: Any, port: int, seconds: int) -> tuple[float, float]:
    """(requests/s, proxy CPU microseconds per request) of one wrk run."""
    before = cpu_seconds(proxy.pid)
    rate = wrk(port, seconds)
    cpu = cpu_seconds(proxy.pid) - before
    return rate, cpu / (rate * seconds) * 1e6


def compare(kind: str, backend_port: int, collector_port: int, seconds: int, rounds: int,
            spawn: bool) -> list[tuple[float, float, float, float]]:
    """Both proxies (tracing off and on) run side by side; wrk alternates between them round
    by round (off, on, on, off, ...), so a burst of load elsewhere on the machine hits both
    about equally. One (off rps, on rps, off us/rq, on us/rq) per round."""
    proxies: dict[bool, tuple[Any, int]] = {}
    try:
        for traced in (False, True):
            port = free_port()
            config = proxy_bootstrap(port, backend_port, collector_port, traced, spawn)
            proxies[traced] = (start_proxy(kind, config, port, f"bench-{kind}-{traced}"), port)
        for _, port in proxies.values():
            wrk(port, 1)  # warm-up
        results = []
        for round_number in range(rounds):
            measured: dict[bool, tuple[float, float]] = {}
            order = (False, True) if round_number % 2 == 0 else (True, False)
            for traced in order:
                measured[traced] = measure_round(*proxies[traced], seconds)
            results.append((measured[False][0], measured[True][0],
                            measured[False][1], measured[True][1]))
        return results
    finally:
        for proxy, _ in proxies.values():
            proxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--spawn-upstream-span", action="store_true",
                        help="a CLIENT span per attempt too (two spans per request)")
    args = parser.parse_args()
    backend_port = free_port()
    backend = Envoy(backend_bootstrap(backend_port), name="bench-backend")
    collector = FakeCollector(decode=False)
    results: dict[str, list[tuple[float, float, float, float]]] = {}
    failed: dict[str, str] = {}
    try:
        backend.wait_ready()
        for kind in ("pointsman", "envoy"):
            try:
                results[kind] = compare(kind, backend_port, collector.port, args.seconds,
                                        args.rounds, args.spawn_upstream_span)
            except LoadError as error:
                failed[kind] = str(error)
    finally:
        collector.stop()
        backend.stop()
    print(f"collector: {collector.raw_requests} export requests, {collector.raw_bytes} bytes")
    print(f"{'proxy':<10} {'off rps':>9} {'on rps':>9} {'rps cost':>9} "
          f"{'off us/rq':>10} {'on us/rq':>10} {'cpu cost':>9}   (medians of {args.rounds} rounds;"
          " rps cost per round)")
    for kind, rounds in results.items():
        off_rps, on_rps, off_cpu, on_cpu = (statistics.median(r[i] for r in rounds)
                                            for i in range(4))
        costs = [100 * (1 - on / off) for off, on, _, _ in rounds]
        print(f"{kind:<10} {off_rps:>9.0f} {on_rps:>9.0f} {statistics.median(costs):>8.1f}% "
              f"{off_cpu:>10.0f} {on_cpu:>10.0f} {100 * (on_cpu / off_cpu - 1):>8.1f}%   "
              f"[{' '.join(f'{c:.0f}' for c in costs)}]")
    for kind, error in failed.items():
        print(f"benchmark failed for {kind}: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
