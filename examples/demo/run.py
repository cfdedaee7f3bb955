"""`make demo`: control plane, two sidecars, sample services, traffic, a live change, traces.

Everything runs on 127.0.0.1 with ports picked free, and stops when the demo ends (or on Ctrl-C).
`--sidecar envoy` runs the very same topology with real Envoy as the sidecars, for comparison.

The demo checks what it shows and exits 1 otherwise: three backends answer round robin, after
the live EDS change backend-3 no longer does, and (unless --no-tracing) every request reached
the collector as one trace of three spans: the frontend sidecar's ingress span (the root), its
egress span under it, and the backend sidecar's ingress span under that.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from examples.demo import topology  # noqa: E402
from tests.support.envoy import envoy_binary  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ManagedProcess, http_get  # noqa: E402


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def write_resources(folder: Path, group: str, resources: list[dict[str, Any]]) -> None:
    path = folder / group / "resources.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"resources": resources}, sort_keys=False))
    tmp.replace(path)  # atomic: the control plane never reads half a file


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def is_mesh_trace(spans: list[dict[str, Any]]) -> bool:
    """One request's trace through both sidecars: sidecar-frontend `ingress` (no parent) ->
    sidecar-frontend `egress <host>` -> sidecar-backend `ingress`, and nothing else. (The
    egress span's kind is left out: Envoy exports it as CLIENT.)"""
    if len(spans) != 3:
        return False
    by_parent = {span["parent_span_id"]: span for span in spans}
    root = by_parent.get("")
    egress = by_parent.get(root["span_id"]) if root else None
    backend = by_parent.get(egress["span_id"]) if egress else None
    if root is None or egress is None or backend is None:
        return False
    return ((root["service"], root["name"], root["kind"]) == ("sidecar-frontend", "ingress",
                                                              "SERVER")
            and egress["service"] == "sidecar-frontend" and egress["name"].startswith("egress ")
            and (backend["service"], backend["name"], backend["kind"]) == (
                "sidecar-backend", "ingress", "SERVER"))


class Demo:
    def __init__(self, sidecar: str, requests: int, tracing: bool = True) -> None:
        self.sidecar = sidecar
        self.tracing = tracing
        self.requests = requests
        self.workdir = Path(tempfile.mkdtemp(prefix="pointsman-demo-"))
        self.processes: list[ManagedProcess] = []
        self.ports = topology.Ports(
            xds=free_port(), xds_admin=free_port(), collector_grpc=free_port(),
            collector_http=free_port(), front_in=free_port(), front_out=free_port(),
            back_in=free_port(), front_admin=free_port(), back_admin=free_port(),
            frontend=free_port(), backends=(free_port(), free_port(), free_port()))

    def start(self, argv: list[str], name: str) -> ManagedProcess:
        process = ManagedProcess(argv, name=name)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def start_services(self) -> None:
        p = self.ports
        say("starting a trace collector, three backend instances and the frontend service")
        self.start([sys.executable, str(HERE / "collector.py"), "--grpc-port",
                    str(p.collector_grpc), "--http-port", str(p.collector_http)], "collector")
        for index, port in enumerate(p.backends, 1):
            self.start([sys.executable, str(HERE / "service.py"), "--name", f"backend-{index}",
                        "--port", str(port)], f"backend-{index}")
        self.start([sys.executable, str(HERE / "service.py"), "--name", "frontend", "--port",
                    str(p.frontend), "--call", f"http://127.0.0.1:{p.front_out}"], "frontend")

    def start_control_plane(self) -> None:
        p = self.ports
        resources = self.workdir / "resources"
        write_resources(resources, "frontend", topology.frontend_resources(p, self.tracing))
        write_resources(resources, "backend",
                        topology.backend_resources(p, list(p.backends), self.tracing))
        say(f"starting the control plane on 127.0.0.1:{p.xds} (resources in {resources})")
        self.start([sys.executable, "-m", "controlplane", "--resources", str(resources),
                    "--listen", f"127.0.0.1:{p.xds}", "--admin", f"127.0.0.1:{p.xds_admin}"],
                   "controlplane")

    def start_sidecars(self) -> None:
        p = self.ports
        for node, admin in (("frontend", p.front_admin), ("backend", p.back_admin)):
            bootstrap = topology.sidecar_bootstrap(f"{node}-1", node, p, admin)
            path = self.workdir / f"sidecar-{node}.yaml"
            path.write_text(yaml.safe_dump(bootstrap, sort_keys=False))
            if self.sidecar == "envoy":
                argv = [envoy_binary(), "-c", str(path), "--base-id", str(admin),
                        "--concurrency", "1", "--log-level", "warn"]
            else:
                argv = [sys.executable, "-m", "proxy", "-c", str(path)]
            say(f"starting sidecar-{node} ({self.sidecar}), admin on 127.0.0.1:{admin}")
            self.start(argv, f"sidecar-{node}")
        for process, admin in zip(self.processes[-2:], (p.front_admin, p.back_admin),
                                  strict=True):
            process.wait_until(lambda a=admin: http_get(f"http://127.0.0.1:{a}/ready")[0] == 200,
                               timeout=30, what="ready (config received over ADS)")

    def send_traffic(self, label: str) -> collections.Counter[str]:
        url = f"http://127.0.0.1:{self.ports.front_in}/hello"
        answered: collections.Counter[str] = collections.Counter()
        for _ in range(self.requests):
            status, body = http_get(url, timeout=5)
            answered[json.loads(body)["downstream"]["service"] if status == 200 else
                     f"HTTP {status}"] += 1
        say(f"{label}: {self.requests} requests, answered by {dict(sorted(answered.items()))}")
        return answered

    def live_change(self) -> None:
        p = self.ports
        say("live change: backend-3 leaves the backend's endpoints (a file edit, pushed over EDS)")
        write_resources(self.workdir / "resources", "backend",
                        topology.backend_resources(p, list(p.backends[:2]), self.tracing))
        time.sleep(2.0)  # the control plane pushes within 2 s of a file change

    def show_status(self) -> None:
        status = get_json(f"http://127.0.0.1:{self.ports.xds_admin}/status")
        say("control plane status (admin /status)")
        print(json.dumps(status, indent=1)[:1500])

    def check_traces(self, sent: int) -> bool:
        """Wait (Envoy exports every 5 s) until each of the `sent` requests is at the collector
        as a full mesh trace; show one. False if some are missing or malformed."""
        deadline = time.monotonic() + 20
        traces: dict[str, list[dict[str, Any]]] = {}
        complete: list[str] = []
        while time.monotonic() < deadline and len(complete) < sent:
            time.sleep(0.5)
            traces = get_json(f"http://127.0.0.1:{self.ports.collector_http}/traces")
            complete = [trace for trace, spans in traces.items() if is_mesh_trace(spans)]
        spans = sum(len(item) for item in traces.values())
        say(f"traces: {len(complete)} of {sent} requests traced through both sidecars "
            f"({len(traces)} traces, {spans} spans at the collector)")
        for trace_id in complete[:1]:
            print(f"trace {trace_id}:")
            for span in sorted(traces[trace_id], key=lambda s: s["duration_ms"], reverse=True):
                print(f"  {span['service']:<18} {span['kind']:<7} {span['name']:<28} "
                      f"{span['duration_ms']:7.2f} ms")
        return len(complete) == sent == len(traces)

    def show_logs(self) -> None:
        for process in self.processes:
            say(f"last lines of {process.name} ({process.log})")
            print("\n".join(process.output().splitlines()[-8:]))

    def run(self) -> int:
        try:
            self.start_services()
            self.start_control_plane()
            self.start_sidecars()
            before = self.send_traffic("round robin over three backends")
            self.live_change()
            after = self.send_traffic("after the change")
            self.show_status()
            traced = self.check_traces(2 * self.requests) if self.tracing else True
            ok = traced and len(before) == 3 and "backend-3" not in after and sum(
                after.values()) == after["backend-1"] + after["backend-2"]
            say("demo " + ("succeeded" if ok else "FAILED"))
            if not ok:
                self.show_logs()
            return 0 if ok else 1
        except (OSError, RuntimeError, TimeoutError, KeyError, ValueError) as error:
            say(f"demo FAILED: {error!r}")
            self.show_logs()
            return 1
        finally:
            self.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sidecar", choices=("pointsman", "envoy"), default="pointsman")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--no-tracing", action="store_true", help="leave tracing unconfigured")
    args = parser.parse_args()
    return Demo(args.sidecar, args.requests, tracing=not args.no_tracing).run()


if __name__ == "__main__":
    sys.exit(main())
