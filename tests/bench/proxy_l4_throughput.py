"""L4 benchmark (a script, not a test): tcp_proxy bulk throughput (iperf3) and connections per
second, `pointsman proxy` side by side with Envoy at equal `--concurrency` (default 1), in one
run.

Reported: throughput (Gbit/s) and the Pointsman/Envoy ratio, connections/s and the ratio, and
each proxy's CPU seconds per GB moved (utime+stime of the proxy process tree from /proc).
Both sides of the sidecar are plain TCP, so Pointsman relays with os.splice (zero copy).

    .venv/bin/python tests/bench/proxy_l4_throughput.py [--seconds 5] [--streams 1]
        [--rounds 3] [--concurrency 1] [--rbac]

`--rbac` puts an `envoy.filters.network.rbac` (ALLOW, any peer) before the tcp_proxy: what
the mesh compiles for a TCP port with an AuthorizationPolicy (Pointsman still splices; the
filter sees each read's size).

Needs iperf3 (Debian package `iperf3`). On a shared 2-core machine the client, the server and
the proxy compete for CPU: compare the ratios of one run, not absolute numbers across runs.
An iperf3 error, a failed connection or a run that moved nothing stops the benchmark with
exit status 1 (tests/bench/load_checks.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import LoadError, run_checked  # noqa: E402
from tests.integration.proxy.helpers import listener, static_cluster, tcp_proxy  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.pointsman import Pointsman  # noqa: E402
from tests.support.ports import free_port, wait_for_port  # noqa: E402
from tests.support.processes import ManagedProcess, python_argv  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


RBAC = {"name": "envoy.filters.network.rbac", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
    "stat_prefix": "bench", "rules": {"policies": {"any": {
        "permissions": [{"any": True}], "principals": [{"any": True}]}}}}}


def bootstrap(listen_port: int, backend_port: int, rbac: bool = False) -> dict[str, Any]:
    filters = [*([RBAC] if rbac else []), tcp_proxy("backend")]
    return {"static_resources": {
        "listeners": [listener("bench", listen_port, [{"filters": filters}])],
        "clusters": [static_cluster("backend", [backend_port])],
    }}


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its children processes (workers), in seconds."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def iperf(port: int, seconds: float, streams: int) -> float:
    """Bytes received by the iperf3 server through the proxy."""
    result = subprocess.run(
        ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-P", str(streams),
         "-J"], capture_output=True, text=True, timeout=seconds + 30, check=False)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        report = {"error": (result.stdout + result.stderr).strip()[-500:]}
    if result.returncode != 0 or "error" in report:
        raise LoadError(f"iperf3 (exit {result.returncode}): {report.get('error')}")
    moved = float(report["end"]["sum_received"]["bytes"])
    if moved <= 0:
        raise LoadError("iperf3 moved no bytes through the proxy")
    return moved


CPS_CLIENT = r"""
import asyncio, sys, time
async def main(port, seconds, concurrency):
    done = 0
    deadline = time.monotonic() + seconds
    async def worker():
        nonlocal done
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            await reader.readexactly(1)
            writer.close()
            await writer.wait_closed()
            done += 1
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    print(done / seconds)
asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])))
"""

CPS_SERVER = r"""
import asyncio, sys
async def handle(reader, writer):
    writer.write(b"x")
    await writer.drain()
    writer.close()
async def main(port):
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()
asyncio.run(main(int(sys.argv[1])))
"""


def connections_per_second(port: int, seconds: float) -> float:
    result = subprocess.run(python_argv("-c", CPS_CLIENT, str(port), str(seconds), "32"),
                            capture_output=True, text=True, timeout=seconds + 60, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise LoadError(f"connection client failed (exit {result.returncode}): "
                        f"{result.stderr.strip()[-500:]}")
    rate = float(result.stdout.strip())
    if rate <= 0:
        raise LoadError("no connection completed through the proxy")
    return rate


def measure(kind: str, args: argparse.Namespace, iperf_port: int,
            cps_port: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for what, backend in (("bulk", iperf_port), ("cps", cps_port)):
        listen_port = free_port()
        config = bootstrap(listen_port, backend, args.rbac)
        concurrency = ("--concurrency", str(args.concurrency))
        proxy = (Envoy(config, extra_args=concurrency) if kind == "envoy"
                 else Pointsman(config, extra_args=concurrency))
        with proxy:
            proxy.wait_ready()  # no probe connection: iperf3 -s serves one test at a time
            before = cpu_seconds(proxy.pid)
            if what == "bulk":
                moved = iperf(listen_port, args.seconds, args.streams)
                cpu = cpu_seconds(proxy.pid) - before
                results["gbit_per_s"] = moved * 8 / args.seconds / 1e9
                results["cpu_s_per_gb"] = cpu / (moved / 1e9)
            else:
                results["cps"] = connections_per_second(listen_port, args.seconds)
                results["cps_cpu_s"] = cpu_seconds(proxy.pid) - before
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=1,
                        help="workers for both proxies (Envoy threads, Pointsman processes)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate Envoy and Pointsman this many times; report medians")
    parser.add_argument("--rbac", action="store_true",
                        help="a network RBAC filter (ALLOW any) before the tcp_proxy")
    args = parser.parse_args()
    if shutil.which("iperf3") is None:
        print("iperf3 not found: apt-get install -y iperf3", file=sys.stderr)
        return 2
    iperf_port, cps_port = free_port(), free_port()
    with ManagedProcess(["iperf3", "-s", "-p", str(iperf_port)], name="iperf3"), \
            ManagedProcess(python_argv("-c", CPS_SERVER, str(cps_port)), name="cps-server"):
        wait_for_port(cps_port)
        time.sleep(0.5)  # iperf3 -s prints nothing to wait on; do not poke its port
        rounds: dict[str, list[dict[str, float]]] = {"envoy": [], "pointsman": []}
        for _ in range(args.rounds):  # interleaved, so background load hits both alike
            for kind in rounds:
                rounds[kind].append(measure(kind, args, iperf_port, cps_port))
    envoy, ours = (_medians(rounds["envoy"]), _medians(rounds["pointsman"]))
    print(f"{'rbac + ' if args.rbac else ''}tcp_proxy, --concurrency {args.concurrency}, "
          f"iperf3 {args.seconds:g}s x "
          f"{args.streams} stream(s), median of {args.rounds} interleaved rounds")
    print(f"{'':22}{'envoy':>12}{'pointsman':>12}{'ratio':>8}")
    rows = [("throughput Gbit/s", "gbit_per_s"), ("connections/s", "cps"),
            ("CPU s per GB", "cpu_s_per_gb")]
    for label, key in rows:
        ratio = ours[key] / envoy[key] if envoy[key] else float("nan")
        print(f"{label:22}{envoy[key]:12.2f}{ours[key]:12.2f}{ratio:8.2f}")
    print(json.dumps({"median": {"envoy": envoy, "pointsman": ours}, "rounds": rounds}))
    return 0


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


if __name__ == "__main__":
    sys.exit(run_checked(main))
