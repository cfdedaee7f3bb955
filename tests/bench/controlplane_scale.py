"""Control plane at scale (a script, run by hand; not a test).

An independent load generator: N simulated sidecars (tests/bench/xds/sidecars.py), each on its
own connection, spread over `--procs` processes, all opening their streams at the same moment
and subscribing CDS -> EDS -> LDS -> RDS as Envoy does, against `pointsman controlplane` serving
a mesh of S services (tests/bench/xds/mesh.py: S+1 listeners, one route configuration with S
virtual hosts, S+1 clusters, S endpoint sets per sidecar; 1.26 MB at S = 1,000), one shared
configuration or one view per workload (`--layout groups`), or the same services as mesh
objects compiled per sidecar (`--layout mesh`, `--mesh`: each sidecar a member of its Service,
registered as its endpoint once its listeners are ACKed). Everything runs on this machine,
generator included. Measured:

- start-up: control-plane process start -> /ready;
- converge: the common start -> each sidecar holds every type (its RDS response), p50/p90/max;
- change: rewriting one service's file (one endpoint moves) -> each sidecar receives the new
  EDS version, p50/p90/max over all sidecars and `--rounds` changes; it includes the file poll
  (`--poll-interval`, 0.1 s here);
- control-plane CPU seconds (its process tree) for the converge and per change, the generator's;
- RSS: idle (config loaded, no sidecar), steady (all converged), peak (VmHWM), and the steady
  minus idle per sidecar;
- failed streams (by status) and sidecars that did not converge: a run with any is reported
  as such.

    .venv/bin/python tests/bench/controlplane_scale.py                       # 1,000 x 1,000
    .venv/bin/python tests/bench/controlplane_scale.py --sidecars 10000 --procs 6
    .venv/bin/python tests/bench/controlplane_scale.py --sidecars 100 --layout groups
    .venv/bin/python tests/bench/controlplane_scale.py --layout mesh
    .venv/bin/python tests/bench/controlplane_scale.py --delta
    .venv/bin/python tests/bench/controlplane_scale.py --server-repo /work/wt-old   # compare
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.xds import procfs  # noqa: E402
from tests.bench.xds.load import Report, WorkerSpec, worker_entry  # noqa: E402
from tests.bench.xds.mesh import LAYOUTS, Mesh  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ManagedProcess, python_argv  # noqa: E402


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p90": float("nan"), "max": float("nan")}
    ordered = sorted(values)
    return {"p50": ordered[len(ordered) // 2],
            "p90": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
            "max": ordered[-1]}


def ready(admin: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


class Run:
    """One measurement: a server, a mesh, N sidecars."""

    def __init__(self, args: argparse.Namespace, sidecars: int) -> None:
        self.args = args
        self.sidecars = sidecars
        self.folder = Path(tempfile.mkdtemp(prefix="cp-scale-"))
        self.mesh = Mesh(self.folder / "mesh", args.services, args.layout)
        self.result: dict[str, Any] = {
            "protocol": "delta" if args.delta else "sotw", "sidecars": sidecars,
            "services": args.services, "layout": args.layout, "server_workers": args.workers,
            "server": str(args.server_repo), "client": args.client}

    def start_server(self) -> ManagedProcess:
        self.mesh.write()
        port, admin = free_port(), free_port()
        extra = ["--workers", str(self.args.workers)] if self.args.workers > 1 else []
        extra += self.args.server_arg
        started = time.monotonic()
        server = ManagedProcess(python_argv(
            "-m", "controlplane",
            "--mesh" if self.args.layout == "mesh" else "--resources", str(self.mesh.root),
            "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}",
            "--poll-interval", str(self.args.poll_interval), "--log-level", "warning", *extra),
            name="controlplane-scale", cwd=self.args.server_repo,
            env=dict(item.split("=", 1) for item in self.args.server_env))
        server.wait_until(lambda: ready(admin), timeout=self.args.timeout, what="ready")
        self.result["startup_s"] = time.monotonic() - started
        self.port, self.admin = port, admin
        return server

    def start_generator(self) -> tuple[list[Any], list[Any]]:
        context = multiprocessing.get_context("spawn")
        share = -(-self.sidecars // self.args.procs)
        pipes, processes = [], []
        for worker in range(self.args.procs):
            first = worker * share
            count = min(share, self.sidecars - first)
            if count <= 0:
                break
            spec = WorkerSpec(f"127.0.0.1:{self.port}", first, count,
                              tuple(self.mesh.node_cluster(first + offset)
                                    for offset in range(count)),
                              tuple(self.mesh.node_metadata(first + offset)
                                    for offset in range(count)),
                              self.args.delta, self.args.timeout,
                              self.args.client == "native")
            parent, child = context.Pipe()
            process = context.Process(target=worker_entry, args=(spec, child), daemon=True)
            process.start()
            pipes.append(parent)
            processes.append(process)
        for pipe in pipes:
            assert pipe.recv()[0] == "ready"
        return pipes, processes

    def measure(self) -> dict[str, Any]:
        server = self.start_server()
        processes: list[Any] = []
        try:
            time.sleep(1.0)
            idle_kib = procfs.memory_kib(server.pid)
            pipes, processes = self.start_generator()
            cpu_start = procfs.cpu_seconds(server.pid)
            by_process = procfs.cpu_by_process(server.pid)
            counts = self._counts(server.pid)
            start_at = time.time() + 1.0
            for pipe in pipes:
                pipe.send(("start", start_at))
            reports = [pipe.recv()[1] for pipe in pipes]
            self.result["converge_cpu_s"] = procfs.cpu_seconds(server.pid) - cpu_start
            self.result.update({f"converge_{key}": value - counts[key]
                                for key, value in self._counts(server.pid).items()})
            self.result["converge_cpu_by_process_s"] = sorted(
                (round(seconds - by_process.get(pid, 0.0), 2) for pid, seconds
                 in procfs.cpu_by_process(server.pid).items()), reverse=True)
            self._converged(reports, start_at)
            time.sleep(2.0)
            self.result["rss_idle_mib"] = idle_kib / 1024
            self.result["rss_steady_mib"] = procfs.memory_kib(server.pid) / 1024
            self.result["kib_per_sidecar"] = (
                procfs.memory_kib(server.pid) - idle_kib) / self.sidecars
            self._changes(pipes, server.pid)
            self.result["rss_peak_mib"] = procfs.memory_kib(server.pid, "VmHWM") / 1024
            for pipe in pipes:
                pipe.send("stop")
            return self.result
        finally:
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.kill()
            server.stop()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _counts(self, pid: int) -> dict[str, int]:
        """Counts that load on the machine does not move: responses sent (/metrics), minor
        page faults, context switches of the threads alive (a lower bound)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics",
                                    timeout=30) as answer:
            text = answer.read().decode()
        pushes = sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                     if line.startswith("pointsman_xds_pushes_total"))
        return {"responses": pushes, "minor_faults": procfs.minor_faults(pid),
                "context_switches": procfs.context_switches(pid)}

    def _converged(self, reports: list[Report], start_at: float) -> None:
        times = [at - start_at for report in reports for at in report.times if at]
        failures: Counter[str] = Counter()
        held: Counter[Any] = Counter()
        for report in reports:
            failures.update(report.failures)
            held.update(report.held)
        expected = tuple(sorted(self.mesh.expected().items()))
        self.result.update({f"converge_{key}_s": value
                            for key, value in percentiles(times).items()})
        self.result["not_converged"] = self.sidecars - len(times)
        self.result["failed_streams"] = sum(failures.values())
        self.result["failures"] = dict(failures.most_common(8))
        self.result["incomplete_config"] = sum(count for seen, count in held.items()
                                               if seen != expected)
        self.result["mib_received_per_sidecar"] = (
            sum(report.bytes_received for report in reports) / self.sidecars / 2**20)
        self.result["generator_cpu_s"] = sum(report.cpu_seconds for report in reports)

    def _changes(self, pipes: list[Any], server_pid: int) -> None:
        latencies, cpu, missed = [], [], 0
        for round_number in range(1, self.args.rounds + 1):
            for pipe in pipes:
                pipe.send("arm")
            for pipe in pipes:
                assert pipe.recv()[0] == "armed"
            cpu_start = procfs.cpu_seconds(server_pid)
            changed_at = time.time()
            self.mesh.write_service(round_number % self.args.services, generation=round_number)
            reports = [pipe.recv()[1] for pipe in pipes]
            cpu.append(procfs.cpu_seconds(server_pid) - cpu_start)
            times = [at for report in reports for at in report.times]
            missed += sum(1 for at in times if not at)
            latencies += [at - changed_at for at in times if at]
            time.sleep(1.0)
        self.result.update({f"change_{key}_s": value
                            for key, value in percentiles(latencies).items()})
        self.result["change_missed"] = missed
        self.result["change_cpu_s"] = statistics.median(cpu) if cpu else float("nan")


def row(result: dict[str, Any]) -> str:
    """One line of the docs/benchmarks.md table."""
    def ms(key: str) -> str:
        return f"{result[key]:.2f}"
    return (f"| {result['protocol']} | {result['sidecars']:,} x {result['services']:,} "
            f"{result['layout']} | {result['startup_s']:.1f} s | "
            f"{ms('converge_p50_s')} / {ms('converge_p90_s')} / {ms('converge_max_s')} s | "
            f"{ms('change_p50_s')} / {ms('change_p90_s')} / {ms('change_max_s')} s | "
            f"{result['converge_cpu_s']:.1f} / {result['change_cpu_s']:.2f} | "
            f"{result['generator_cpu_s']:.0f} | "
            f"{result['rss_idle_mib']:.0f} / {result['rss_steady_mib']:.0f} / "
            f"{result['rss_peak_mib']:.0f} MiB | {result['kib_per_sidecar']:.0f} KiB | "
            f"{result['failed_streams']} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sidecars", type=int, action="append",
                        help="simulated sidecars (repeat for several runs; default 1000)")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--layout", choices=LAYOUTS, default="shared")
    parser.add_argument("--delta", action="store_true", help="delta xDS instead of SotW")
    parser.add_argument("--procs", type=int, default=4, help="generator processes")
    parser.add_argument("--workers", type=int, default=1, help="control-plane --workers")
    parser.add_argument("--rounds", type=int, default=3, help="endpoint changes timed")
    parser.add_argument("--poll-interval", type=float, default=0.1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--client", choices=["grpcio", "native"], default="grpcio",
                        help="the simulated sidecars' gRPC: grpcio, or libnghttp2 on uvloop "
                             "(tests/bench/xds/h2client.py: a cheaper generator)")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="extra control-plane argument (--server-arg=--push-budget=1)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the control plane (GRPC_TRACE=..., say)")
    parser.add_argument("--server-repo", type=Path, default=REPO,
                        help="run the control plane from this checkout (before/after runs)")
    args = parser.parse_args()
    failed = False
    for sidecars in args.sidecars or [1000]:
        result = Run(args, sidecars).measure()
        print(json.dumps({key: round(value, 3) if isinstance(value, float) else value
                          for key, value in result.items()}), flush=True)
        print(row(result), flush=True)
        failed |= bool(result["not_converged"] or result["incomplete_config"]
                       or result["change_missed"])
    if failed:
        print("benchmark failed: some sidecars did not converge or missed a change",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
