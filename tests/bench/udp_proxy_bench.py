"""UDP benchmark (a script, not a test): datagrams/s and bytes/s through udp_proxy,
`pointsman proxy` side by side with Envoy's udp_proxy at equal `--concurrency`, in one run.

A load process keeps a window of datagrams in flight on each of `--clients` sockets (one
udp_proxy session each) to an echo backend behind the proxy, and counts the echoes that come
back in `--seconds`; a datagram lost on the way frees its window slot after 50 ms (reported as
lost). Reported: echoed datagrams/s, echoed payload bytes/s, the Pointsman/Envoy ratios, lost
datagrams, and each proxy's CPU seconds per million datagrams (utime+stime from /proc).

    .venv/bin/python tests/bench/udp_proxy_bench.py [--seconds 5] [--clients 16]
        [--window 8] [--size 512] [--rounds 3] [--concurrency 1]

The load and echo processes are Python too and share the 2 cores with the proxy: compare the
ratios of one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import LoadError  # noqa: E402
from tests.support.bootstraps import static_cluster  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.pointsman import Pointsman  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ManagedProcess, python_argv  # noqa: E402
from tests.support.udp_servers import udp_proxy_listener  # noqa: E402

ECHO = r"""
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    data, peer = sock.recvfrom(65535)
    sock.sendto(data, peer)
"""

LOAD = r"""
import json, selectors, socket, sys, time
port, seconds, clients, window, size = (int(sys.argv[1]), float(sys.argv[2]),
                                        int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
payload = b"q" * size
target = ("127.0.0.1", port)
selector = selectors.DefaultSelector()
state = {}
for _ in range(clients):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(target)
    selector.register(sock, selectors.EVENT_READ)
    state[sock] = [0, time.monotonic()]  # in flight, last reply
def fill(sock, now):
    slot = state[sock]
    while slot[0] < window:
        try:
            sock.send(payload)
        except (BlockingIOError, ConnectionRefusedError):
            break
        slot[0] += 1
echoed = echoed_bytes = lost = 0
start = time.monotonic()
for sock in state:
    fill(sock, start)
deadline = start + seconds
while (now := time.monotonic()) < deadline:
    for key, _ in selector.select(0.01):
        sock = key.fileobj
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                break
            echoed += 1
            echoed_bytes += len(data)
            state[sock][0] -= 1
            state[sock][1] = now
        fill(sock, now)
    for sock, slot in state.items():
        if slot[0] and now - slot[1] > 0.05:  # lost on the way: free the window
            lost += slot[0]
            slot[0] = 0
            slot[1] = now
            fill(sock, now)
elapsed = time.monotonic() - start
print(json.dumps({"datagrams_per_s": echoed / elapsed, "bytes_per_s": echoed_bytes / elapsed,
                  "lost": lost}))
"""


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its direct children (workers), in seconds (/proc)."""
    total = 0.0
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def bootstrap(port: int, backend_port: int) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [udp_proxy_listener("bench", port, {"stat_prefix": "bench",
                                                         "cluster": "echo"})],
        "clusters": [static_cluster("echo", [backend_port])]}}


def load(port: int, args: argparse.Namespace) -> dict[str, float]:
    result = subprocess.run(
        python_argv("-c", LOAD, str(port), str(args.seconds), str(args.clients),
                    str(args.window), str(args.size)),
        capture_output=True, text=True, timeout=args.seconds + 60, check=False)
    if result.returncode != 0 or not result.stdout.strip():
        raise LoadError(f"load process failed (exit {result.returncode}): "
                        f"{result.stderr.strip()[-500:]}")
    report: dict[str, float] = json.loads(result.stdout)
    if report["datagrams_per_s"] <= 0:
        raise LoadError("no datagram came back through the proxy")
    return report


def measure(kind: str, args: argparse.Namespace, echo_port: int) -> dict[str, float]:
    port = free_port()
    concurrency = ("--concurrency", str(args.concurrency))
    config = bootstrap(port, echo_port)
    proxy = (Envoy(config, extra_args=concurrency) if kind == "envoy"
             else Pointsman(config, extra_args=concurrency))
    with proxy:
        proxy.wait_ready()
        before = cpu_seconds(proxy.pid)
        report = load(port, args)
        cpu = cpu_seconds(proxy.pid) - before
    moved = report["datagrams_per_s"] * args.seconds
    report["cpu_s_per_m_datagrams"] = cpu / (moved / 1e6)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate Envoy and Pointsman this many times; report medians")
    args = parser.parse_args()
    echo_port = free_port()
    with ManagedProcess(python_argv("-c", ECHO, str(echo_port)), name="udp-echo"):
        rounds: dict[str, list[dict[str, float]]] = {"envoy": [], "pointsman": []}
        for _ in range(args.rounds):  # interleaved, so background load hits both alike
            for kind in rounds:
                rounds[kind].append(measure(kind, args, echo_port))
    envoy, ours = _medians(rounds["envoy"]), _medians(rounds["pointsman"])
    print(f"udp_proxy, --concurrency {args.concurrency}, {args.clients} sessions x window "
          f"{args.window}, {args.size} B datagrams, {args.seconds:g}s, median of "
          f"{args.rounds} interleaved rounds")
    print(f"{'':26}{'envoy':>12}{'pointsman':>12}{'ratio':>8}")
    for label, key in (("echoed datagrams/s", "datagrams_per_s"),
                       ("echoed MB/s", "bytes_per_s"), ("lost datagrams", "lost"),
                       ("CPU s per M datagrams", "cpu_s_per_m_datagrams")):
        scale = 1e6 if key == "bytes_per_s" else 1
        ratio = ours[key] / envoy[key] if envoy[key] else float("nan")
        print(f"{label:26}{envoy[key] / scale:12.2f}{ours[key] / scale:12.2f}{ratio:8.2f}")
    print(json.dumps({"median": {"envoy": envoy, "pointsman": ours}, "rounds": rounds}))
    return 0


def _medians(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}


if __name__ == "__main__":
    sys.exit(main())
