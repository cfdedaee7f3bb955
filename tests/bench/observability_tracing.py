"""Tracing overhead benchmark (a script, not a test): requests/s with tracing off and with
tracing on at 100% sampling, for `pointsman proxy` and Envoy side by side, same bootstrap.

    .venv/bin/python tests/bench/observability_tracing.py [--seconds 5] [--spawn-upstream-span]

Backend: an Envoy answering with a direct_response. Collector: an in-process fake OTLP/gRPC
collector that only counts bytes (decoding would steal CPU from the proxies on 2 cores).
Load: wrk -t1 -c10 over HTTP/1.1 keep-alive. Both proxies run `--concurrency 1`.
Target (issue 5): overhead under 15%.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.conformance.observability.http_support import (  # noqa: E402
    bootstrap,
    cluster,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.integration.observability.collector import FakeCollector  # noqa: E402
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
    result = subprocess.run(["wrk", "-t1", "-c10", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                            capture_output=True, text=True, check=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if match is None or errors is not None:
        raise RuntimeError(f"wrk failed or saw errors:\n{result.stdout}")
    return float(match.group(1))


def measure(kind: str, config: dict[str, Any], port: int, seconds: int,
            rounds: int) -> tuple[float, float]:
    """(median requests/s over `rounds` runs, proxy CPU microseconds per request)."""
    if kind == "envoy":
        config = {**config, "layered_runtime": {"layers": [{"name": "static", "static_layer": {
            "tracing.opentelemetry.flush_interval_ms": 1000}}]}}
        proxy: Any = Envoy(config, name="bench-envoy")
    else:
        proxy = Pointsman(config, name="bench-pointsman")
    try:
        proxy.wait_ready()
        wait_for_port(port)
        wrk(port, 1)  # warm-up
        rates, cpu_per_request = [], []
        for _ in range(rounds):
            before = cpu_seconds(proxy.pid)
            rate = wrk(port, seconds)
            cpu = cpu_seconds(proxy.pid) - before
            rates.append(rate)
            cpu_per_request.append(cpu / (rate * seconds) * 1e6)
        return statistics.median(rates), statistics.median(cpu_per_request)
    finally:
        proxy.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spawn-upstream-span", action="store_true",
                        help="a CLIENT span per attempt too (two spans per request)")
    args = parser.parse_args()
    backend_port = free_port()
    backend = Envoy(backend_bootstrap(backend_port), name="bench-backend")
    collector = FakeCollector(decode=False)
    try:
        backend.wait_ready()
        results: dict[tuple[str, bool], tuple[float, float]] = {}
        for kind in ("pointsman", "envoy"):
            for traced in (False, True):
                port = free_port()
                config = proxy_bootstrap(port, backend_port, collector.port, traced,
                                         args.spawn_upstream_span)
                try:
                    results[(kind, traced)] = measure(kind, config, port, args.seconds,
                                                      args.rounds)
                except RuntimeError as error:
                    print(f"{kind} tracing={'on' if traced else 'off'}: failed: "
                          f"{str(error)[-400:]}")
    finally:
        collector.stop()
        backend.stop()
    print(f"collector: {collector.raw_requests} export requests, {collector.raw_bytes} bytes")
    print(f"{'proxy':<10} {'off rps':>9} {'on rps':>9} {'rps cost':>9} "
          f"{'off us/rq':>10} {'on us/rq':>10} {'cpu cost':>9}")
    for kind in ("pointsman", "envoy"):
        off, on = results.get((kind, False)), results.get((kind, True))
        if off is None or on is None:
            print(f"{kind:<10} incomplete")
            continue
        print(f"{kind:<10} {off[0]:>9.0f} {on[0]:>9.0f} {100 * (1 - on[0] / off[0]):>8.1f}% "
              f"{off[1]:>10.0f} {on[1]:>10.0f} {100 * (on[1] / off[1] - 1):>8.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
