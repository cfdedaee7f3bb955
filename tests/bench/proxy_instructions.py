"""Instructions per proxied request (a script, not a test), counted by callgrind.

    .venv/bin/python tests/bench/proxy_instructions.py [--requests 2000] [--protocol h2|h1]
        [--tree PATH]

Wall-clock benchmarks on this shared 2-core machine move by 10-20% from run to run;
instruction counts repeat to within 0.1% whatever else runs, so they show what a change to the
request path saves. The sidecar runs under `valgrind --tool=callgrind` with instrumentation
off through start-up and a warm-up, on only while h2load sends `--requests` requests (HTTP/2:
one connection, 10 streams at a time; HTTP/1.1: one connection, one at a time) through it to
an Envoy direct_response backend. `--tree` measures another checkout (a git worktree) with
this script, for before/after figures. Needs valgrind and h2load (Debian: valgrind,
nghttp2-client). Instructions are not time (a syscall counts for little; Envoy is not
measured here): the side-by-side ratios stay in proxy_http_bench.py.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import h2load_requests_per_second, run_checked  # noqa: E402
from tests.bench.proxy_http_bench import backend_bootstrap, proxy_bootstrap  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.proxies import AdminProxy  # noqa: E402


def h2load(port: int, requests: int, protocol: str) -> None:
    """Send `requests` through the proxy; any non-2xx or failed request is a LoadError (the
    instructions of error paths are not the request path's)."""
    argv = ["h2load", "-c1", f"-n{requests}", f"http://127.0.0.1:{port}/"]
    argv[1:1] = ["-m10"] if protocol == "h2" else ["--h1", "-m1"]
    h2load_requests_per_second(
        subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False), requests)


def total_instructions(out_file: Path) -> int:
    total = 0
    for dump in out_file.parent.glob(out_file.name + "*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--protocol", choices=("h2", "h1"), default="h2")
    parser.add_argument("--tree", type=Path, default=REPO)
    args = parser.parse_args()
    tree = args.tree.resolve()
    backend_port = free_port()
    backend = Envoy(backend_bootstrap(backend_port), name="instr-backend",
                    extra_args=("--concurrency", "1"))
    ports = {"h1": free_port(), "h2": free_port()}
    with tempfile.TemporaryDirectory() as scratch:
        out_file = Path(scratch) / "callgrind.out"
        python = sys.executable
        # `python -m` puts the working directory first on sys.path: run in the tree measured.
        os.environ["PYTHONPATH"] = str(tree)
        cwd = os.getcwd()
        os.chdir(tree)
        try:
            proxy = AdminProxy(proxy_bootstrap(ports, backend_port, 1), lambda path: [
                "valgrind", "--tool=callgrind", "--instr-atstart=no",
                f"--callgrind-out-file={out_file}", python, "-m", "proxy", "-c", str(path),
                "--log-level", "warn"], name="instr-pointsman")
        finally:
            os.chdir(cwd)
        try:
            backend.wait_ready()
            proxy.wait_ready(timeout=300)
            port = ports[args.protocol]
            h2load(port, 300, args.protocol)  # warm-up, not counted
            subprocess.run(["callgrind_control", "-i", "on", str(proxy.pid)],
                           capture_output=True, check=True)
            h2load(port, args.requests, args.protocol)
            subprocess.run(["callgrind_control", "-i", "off", str(proxy.pid)],
                           capture_output=True, check=True)
            subprocess.run(["callgrind_control", "-d", str(proxy.pid)],
                           capture_output=True, check=True)
            time.sleep(1)
        finally:
            proxy.stop(timeout=60)
            backend.stop()
        total = total_instructions(out_file)
    print(f"{tree} {args.protocol}: {total / args.requests:,.0f} instructions per request "
          f"({args.requests} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(run_checked(main))
