"""`make demo` (`make demo DURATION=30` for an unattended run that checks itself).

A real mesh on loopback: the control plane (a file store; the mesh applied, and the canary
shifted, with `pointsman apply`; sync states from `pointsman status`), an edge Gateway's proxy
(`pointsman sidecar --gateway`: HTTPS for shop.example terminated and routed to `web`, TLS for
vault.example passed through by SNI), five Services each started with `pointsman run`
(sidecar first, then the app), Arize Phoenix receiving every sidecar's spans, Prometheus
scraping every sidecar, and a traffic generator calling the Gateway. The canary
shifts live (HTTPRoute weights 90/10 -> 50/50 -> 0/100) while a terminal view shows requests/s,
success rate and p50/p99 per sidecar and whether each sidecar is SYNCED with the control plane.

With DURATION (seconds) it stops by itself and exits 0 only if traffic flowed through every
sidecar, each canary step showed in the answers, and whole traces (a span from every hop) were
read back from Phoenix's REST API. Ctrl-C stops everything: each `pointsman run` gets SIGTERM
and drains its sidecar before stopping its app.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from examples.demo import screenshot  # noqa: E402
from examples.demo.mesh import (  # noqa: E402
    EDGE_ADMIN,
    EDGE_IP,
    MESH,
    Inbound,
    Member,
    members,
    quantile,
    read_inbound,
)
from tests.conformance.proxy.observability.backends import (  # noqa: E402
    Phoenix,
    Prometheus,
    phoenix_binary,
    prometheus_binary,
)
from tests.integration.proxy.helpers import tls_files  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.processes import ManagedProcess, http_get  # noqa: E402

PROJECT = "pointsman-demo"
STEPS = ((90, 10), (50, 50), (0, 100))
SHOP, VAULT = (EDGE_IP, 8443, "shop.example"), (EDGE_IP, 9443, "vault.example")


def say(text: str) -> None:
    print(f"== {text}", flush=True)


class Traffic:
    """Threads calling the edge Gateway as clients outside the mesh do: HTTPS to
    shop.example (TLS ends at the Gateway, then web), every answer recorded with the canary
    step it was sent in; and now and then TLS to vault.example (passed through by SNI)."""

    def __init__(self, rate: float, ca: Path, threads: int = 4) -> None:
        self.context = ssl.create_default_context(cafile=str(ca))
        self.vault: collections.Counter[str] = collections.Counter()
        self.interval = threads / rate
        self.threads = threads
        self.step = 0
        self.answers: collections.Counter[tuple[int, str]] = collections.Counter()
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def close(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(10)

    def _loop(self) -> None:
        sent = 0
        while not self.stop.is_set():
            step, began = self.step, time.monotonic()
            self.answers[(step, self.checkout())] += 1
            sent += 1
            if sent % 10 == 0:
                self.vault[self.secret()] += 1
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def _connect(self, target: tuple[str, int, str]) -> http.client.HTTPConnection:
        """HTTP over TLS to the Gateway's address, naming `target`'s host in SNI."""
        host, port, name = target
        connection = http.client.HTTPConnection(host, port, timeout=10)
        connection.sock = self.context.wrap_socket(
            socket.create_connection((host, port), timeout=10), server_hostname=name)
        return connection

    def secret(self) -> str:
        """One TLS-passthrough call to vault: the backend's name, or what went wrong."""
        try:
            connection = self._connect(VAULT)
        except OSError as error:
            return type(error).__name__
        try:
            connection.request("GET", "/secret", headers={"host": VAULT[2]})
            response = connection.getresponse()
            body = response.read()
            return str(json.loads(body).get("backend")) if response.status == 200 else \
                f"HTTP {response.status}"
        except (OSError, ValueError) as error:
            return type(error).__name__
        finally:
            connection.close()

    def checkout(self) -> str:
        """One HTTPS call through the edge to web (and api): the api's name, or what went
        wrong."""
        try:
            connection = self._connect(SHOP)
        except OSError as error:
            return type(error).__name__
        try:
            connection.request("GET", "/checkout", headers={"host": SHOP[2]})
            response = connection.getresponse()
            body = response.read()
            return str(json.loads(body).get("api")) if response.status == 200 else \
                f"HTTP {response.status}"
        except (OSError, ValueError) as error:
            return type(error).__name__
        finally:
            connection.close()


class Demo:
    def __init__(self, duration: float, rate: float, step_seconds: float,
                 screenshot: Path | None = None) -> None:
        self.duration = duration
        self.screenshot = screenshot
        self.step_seconds = step_seconds
        self.folder = Path(tempfile.mkdtemp(prefix="pointsman-demo-"))
        self.mesh = self.folder / "mesh" / "mesh.yaml"
        self.processes: list[ManagedProcess] = []
        self.runs: dict[str, ManagedProcess] = {}
        self.members = members()
        self.certificates = tls_files(self.folder, ["shop.example", "vault.example"])
        self.traffic = Traffic(rate, self.certificates["ca"][0])
        self.phoenix: Phoenix | None = None
        self.prometheus: Prometheus | None = None
        self.control_admin = free_port()
        self.api = f"127.0.0.1:{free_port()}"
        self.last: dict[str, tuple[float, Inbound]] = {}

    # -- start ------------------------------------------------------------------------------

    def start(self) -> None:
        self.mesh.parent.mkdir(parents=True)
        self.start_phoenix()
        xds = free_port()
        say(f"control plane: pointsman controlplane --store file:{self.folder / 'state'}")
        control = self._spawn(["-m", "controlplane", "--store", f"file:{self.folder / 'state'}",
                               "--api", self.api, "--listen", f"127.0.0.1:{xds}",
                               "--admin", f"127.0.0.1:{self.control_admin}"], "controlplane")
        control.wait_until(lambda: http_get(
            f"http://127.0.0.1:{self.control_admin}/ready")[0] == 200, 60, "ready")
        self.apply(*STEPS[0])
        for member in self.members:
            say(f"{member.service}: pointsman run --service {member.service} "
                f"--app-port {member.app_port} -- python -m examples.demo.apps "
                + " ".join(member.app).replace(" {cert} {key}", " CERT KEY"))
            self.runs[member.service] = self._spawn(self._run_argv(member, xds),
                                                    f"run-{member.service}")
        say(f"edge Gateway: pointsman sidecar --gateway --service edge --admin {EDGE_ADMIN}")
        edge = self._spawn(["-m", "proxy.deploy", "sidecar", "--gateway", "--service", "edge",
                            "--server", f"127.0.0.1:{xds}", "--admin", EDGE_ADMIN,
                            "--log-level", "warning"], "edge")
        for member in self.members:
            run = self.runs[member.service]
            run.wait_until(lambda run=run: "application ready" in run.output(), 90,
                           "application ready")
        edge.wait_until(lambda: http_get(f"http://{EDGE_ADMIN}/ready")[0] == 200, 60, "ready")
        self.start_prometheus()
        self.wait_for_answers()

    def wait_for_answers(self, timeout: float = 60.0) -> None:
        """Each application becomes an endpoint once its sidecar's readiness probe passes
        (`run --app-port`, docs/deploy.md), up to a probe period after it listens: the traffic
        starts once a checkout and a vault call are answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.traffic.checkout().startswith("api-") and self.traffic.secret() == "vault":
                return
            time.sleep(0.5)
        say(f"the mesh did not answer within {timeout:.0f}s; starting the traffic anyway")

    def _run_argv(self, member: Member, xds: int) -> list[str]:
        cert, key = (str(path) for path in self.certificates["vault.example"])
        app = [arg.format(cert=cert, key=key) for arg in member.app]
        return ["-m", "proxy.deploy", "run", "--service", member.service,
                "--server", f"127.0.0.1:{xds}", "--instance-ip", member.instance_ip,
                "--outbound-ip", member.outbound_ip, "--app-ip", member.app_ip,
                "--admin", member.admin, "--app-port", str(member.app_port),
                "--log-level", "warning", "--",
                sys.executable, "-m", "examples.demo.apps", *app]

    def _spawn(self, args: list[str], name: str) -> ManagedProcess:
        env = {"PYTHONPATH": str(REPO)}
        if self.phoenix is not None:  # every sidecar traces (docs/observability.md, OTEL_*)
            env.update(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:"
                       f"{self.phoenix.grpc_port}",
                       OTEL_RESOURCE_ATTRIBUTES=f"openinference.project.name={PROJECT}")
        process = ManagedProcess([sys.executable, *args], name=name, env=env, cwd=REPO)
        self.processes.append(process)
        return process

    def start_phoenix(self) -> None:
        binary = phoenix_binary()
        if binary is None:
            say("Phoenix is not installed (make install-phoenix): no traces")
            return
        say("Phoenix (tracing backend): starting")
        self.phoenix = Phoenix(binary)
        self.processes.append(self.phoenix)
        self.phoenix.wait_ready(120)

    def start_prometheus(self) -> None:
        binary = prometheus_binary()
        if binary is None:
            say("Prometheus is not installed (Debian: apt-get install prometheus)")
            return
        self.prometheus = Prometheus(binary, [m.admin for m in self.members] + [EDGE_ADMIN],
                                     "/stats/prometheus")
        self.processes.append(self.prometheus)
        self.prometheus.wait_ready()

    # -- the canary -------------------------------------------------------------------------

    def apply(self, v1: int, v2: int) -> None:
        """`pointsman apply -f mesh.yaml` with the canary's weights (kubectl's output)."""
        cert, key = (path.read_text() for path in self.certificates["shop.example"])
        self.mesh.write_text(MESH.format(v1=v1, v2=v2, cert=json.dumps(cert),
                                         key=json.dumps(key), edge_ip=EDGE_IP))
        done = self.pointsman("apply", "-f", str(self.mesh))
        say(f"pointsman apply -f {self.mesh}:")
        print("\n".join(line for line in done.stdout.splitlines()
                        if "unchanged" not in line) or "(nothing changed)", flush=True)
        if done.returncode != 0:
            raise RuntimeError(f"pointsman apply failed: {done.stdout}{done.stderr}")

    def pointsman(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `pointsman` command of this venv, against the demo's control plane."""
        return subprocess.run([str(Path(sys.executable).parent / "pointsman"), *args,
                               "--server", self.api], capture_output=True, text=True,
                              timeout=60, check=False)

    def run(self) -> int:
        self.start()
        self.where_to_look()
        self.traffic.start()
        began = time.monotonic()
        step = 0
        say(f"canary: api-v1 {STEPS[0][0]}%, api-v2 {STEPS[0][1]}%")
        while not self.duration or time.monotonic() - began < self.duration:
            due = int((time.monotonic() - began) // self.step_seconds)
            if due > step and step + 1 < len(STEPS):
                step += 1
                self.apply(*STEPS[step])
                self.traffic.step = step
                say(f"canary: api-v1 {STEPS[step][0]}%, api-v2 {STEPS[step][1]}%")
            self.show()
            time.sleep(2.0)
        self.traffic.close()
        return self.check()

    # -- the live view ----------------------------------------------------------------------

    def show(self) -> None:
        synced = self.sync_states()
        rows = [f"{'sidecar':<10} {'state':<7} {'req/s':>6} {'success':>8} {'p50 ms':>7} "
                f"{'p99 ms':>7}"]
        rows.append(self._row("edge", EDGE_ADMIN, "gateway", synced.get("edge", "-")))
        for member in self.members:
            rows.append(self._row(member.service, member.admin, "inbound",
                                  synced.get(member.service, "-")))
        recent = collections.Counter({api: n for (step, api), n in self.traffic.answers.items()
                                      if step == self.traffic.step})
        rows.append("answers this step: " + ", ".join(f"{api} {n}"
                                                      for api, n in sorted(recent.items()))
                    + "; vault (TLS passthrough): " + ", ".join(
                        f"{answer} {n}" for answer, n in sorted(self.traffic.vault.items())))
        print("\n".join(rows) + "\n", flush=True)

    def _row(self, name: str, admin: str, prefix: str, state: str) -> str:
        try:
            text = http_get(f"http://{admin}/stats/prometheus")[1]
        except OSError:
            return f"{name:<10} {'DOWN':<7}"
        now, inbound = time.monotonic(), read_inbound(text, prefix)
        then, before = self.last.get(name, (now, Inbound()))
        self.last[name] = (now, inbound)
        done = inbound.total - before.total
        rate = done / (now - then) if now > then else 0.0
        success = 100.0 * (1 - (inbound.errors - before.errors) / done) if done else 100.0
        p50 = quantile(0.5, before.buckets, inbound.buckets)
        p99 = quantile(0.99, before.buckets, inbound.buckets)
        return (f"{name:<10} {state:<7} {rate:>6.1f} {success:>7.1f}% "
                f"{_ms(p50):>7} {_ms(p99):>7}")

    def sync_states(self) -> dict[str, str]:
        """`pointsman status -o json` (istioctl proxy-status): a proxy is NACKED if a type is,
        SYNCED if every type it was sent is, else STALE."""
        try:
            status = json.loads(self.pointsman("status", "-o", "json").stdout)
        except (ValueError, subprocess.SubprocessError):
            return {}
        states = {}
        for proxy in status.get("proxies", []):
            seen = {item.get("state") for item in proxy.get("types", [])} - {"NOT_SENT"}
            states[proxy.get("name", "?")] = "NACKED" if "NACKED" in seen else (
                "SYNCED" if seen <= {"SYNCED"} else "STALE")
        return states

    def where_to_look(self) -> None:
        if self.phoenix is not None:
            say(f"traces: {self.phoenix.url('/')} (project {PROJECT})")
        if self.prometheus is not None:
            say(f"metrics: http://127.0.0.1:{self.prometheus.port}/graph?g0.expr="
                "histogram_quantile(0.99%2C%20rate(envoy_http_downstream_rq_time_bucket"
                "%5B30s%5D))")
        say("sidecar admin: " + ", ".join(f"{m.service} http://{m.admin}/"
                                          for m in self.members))

    # -- the checks -------------------------------------------------------------------------

    def check(self) -> int:
        failures = []
        for name, admin, prefix in [("edge", EDGE_ADMIN, "gateway")] + [
                (member.service, member.admin, "inbound") for member in self.members]:
            text = http_get(f"http://{admin}/stats/prometheus")[1]
            if read_inbound(text, prefix).total == 0:
                failures.append(f"no traffic through the {name} sidecar")
        say(f"vault through the Gateway's TLS passthrough: {dict(self.traffic.vault)}")
        if not self.traffic.vault.get("vault"):
            failures.append("no answer from vault through the TLS passthrough")
        for step, (v1, v2) in enumerate(STEPS):
            seen = {api: n for (at, api), n in self.traffic.answers.items() if at == step}
            say(f"step {step} (weights {v1}/{v2}): {seen}")
            failures += canary_failures(seen, v1, v2)
        failures += self.trace_failures()
        for failure in failures:
            say(f"FAILED: {failure}")
        if not failures:
            say("OK: traffic through every sidecar, the canary shift seen, whole traces in "
                "Phoenix")
        return 1 if failures else 0

    def trace_failures(self) -> list[str]:
        if self.phoenix is None:
            return ["Phoenix is not running: no traces to check"]
        deadline = time.monotonic() + 30
        while True:
            whole = whole_traces(self.phoenix.spans(PROJECT))
            if whole or time.monotonic() > deadline:
                break
            time.sleep(1)
        if not whole:
            return ["no whole trace (a span from every hop) in Phoenix"]
        trace = whole[0]
        say(f"{len(whole)} whole traces in Phoenix; one of them, trace "
            f"{trace[0]['context']['trace_id']} (open {self.phoenix.url('/projects')}, "
            f"project {PROJECT}):\n{describe(trace)}")
        if self.screenshot is not None:
            url = screenshot.trace_url(self.phoenix.url(""), PROJECT,
                                       trace[0]["context"]["trace_id"])
            say(f"screenshot of {url} -> {self.screenshot}")
            screenshot.take(url, self.screenshot)
        return []

    def close(self) -> None:
        self.traffic.close()
        for run in self.runs.values():  # SIGTERM to `run` only: it drains, then stops its app
            if run.alive():
                run.popen.terminate()
        for run in self.runs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):  # stopped below in any case
                run.popen.wait(20)
        for process in reversed(self.processes):
            process.stop()


def canary_failures(seen: dict[str, int], v1: int, v2: int) -> list[str]:
    """Answers of one step against its weights: the share of api-v2 within 20 points (the
    first seconds of a step may still see the previous weights), and none from a 0-weight."""
    total = seen.get("api-v1", 0) + seen.get("api-v2", 0)
    if total < 10:
        return [f"weights {v1}/{v2}: only {total} answers"]
    share = 100.0 * seen.get("api-v2", 0) / total
    failures = []
    if abs(share - v2) > 20:
        failures.append(f"weights {v1}/{v2}: api-v2 answered {share:.0f}%")
    return failures


def whole_traces(spans: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Traces with a span from every hop, one root: web's sidecar in (inbound), out to api and
    out to inventory (outbound clusters), and api's and inventory's sidecars in."""
    by_trace: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for span in spans:
        by_trace[span["context"]["trace_id"]].append(span)
    return [group for group in by_trace.values() if _is_whole(group)]


def _is_whole(group: list[dict[str, Any]]) -> bool:
    clusters = [str(span.get("attributes", {}).get("upstream_cluster", "")) for span in group]
    return (sum(1 for span in group if span["parent_id"] is None) == 1
            and sum(1 for cluster in clusters if cluster.startswith("inbound|")) >= 3
            and any(cluster.startswith("outbound|8080||api-v") for cluster in clusters)
            and any(cluster.startswith("outbound|9090||inventory") for cluster in clusters))


def describe(group: list[dict[str, Any]]) -> str:
    return "\n".join(f"   {span['name']:<24} "
                     f"{span.get('attributes', {}).get('upstream_cluster', '')}"
                     for span in sorted(group, key=lambda span: span["start_time"]))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=0.0,
                        help="seconds; 0: until Ctrl-C (then no checks)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second to web")
    parser.add_argument("--screenshot", type=Path,
                        help="with --duration: a PNG of one whole trace in Phoenix's UI")
    args = parser.parse_args()
    step_seconds = args.duration / len(STEPS) if args.duration else 20.0
    demo = Demo(args.duration, args.rate, step_seconds, args.screenshot)
    # Ctrl-C, and SIGTERM as well (a shell's background job ignores SIGINT): a clean stop
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return demo.run()
    except KeyboardInterrupt:
        say("stopping (each pointsman run drains its sidecar, then stops its app)")
        return 0
    finally:
        demo.close()


if __name__ == "__main__":
    sys.exit(main())
