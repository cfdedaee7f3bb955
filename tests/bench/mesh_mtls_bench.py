"""Benchmark (a script, not a test): sidecar to sidecar with automatic mTLS on and off, for
Pointsman and Envoy sidecars in the same run.

    .venv/bin/python tests/bench/mesh_mtls_bench.py [--seconds 5] [--rounds 2]

A mesh of two Services on loopback (tests/support/mesh.py): `web`'s sidecar calls `api`'s
sidecar, whose application is an Envoy answering a direct_response (never the bottleneck).
mTLS on: the control plane has a CA (`--ca-cert/--ca-key`), so the compiler turns on
automatic mTLS (PERMISSIVE inbound, SVIDs over SDS); off: the same mesh without a CA.
wrk -t1 -c50 --latency drives `web`'s outbound listener; the caller sidecar's upstream pool
reuses its connections to `api`'s sidecar, so this is the steady state of a mesh (few
handshakes). Printed: requests/s and p50/p99 per flavour and mode, the mTLS/plaintext
ratios, and the callee's TLS handshake count (`listener.<address>.ssl.handshake`), which
shows the requests did go over mTLS. Then new connections: 4 client threads each open a
connection straight to `api`'s inbound port, send one GET and close, for `--seconds`: with mTLS
on each is a full handshake presenting web's SVID (issued by the same CA), with it off a plain
TCP connection; printed as connections/s (the Python client's own handshake cost is in it, the
same for both flavours, so read the ratios).
"""

from __future__ import annotations

import argparse
import http.client
import re
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import LoadError, run_checked, wrk_requests_per_second  # noqa: E402
from tests.bench.proxy_http_bench import backend_bootstrap  # noqa: E402
from tests.integration.controlplane.test_mesh import eventually  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.identity import client_context, now, write_ca  # noqa: E402
from tests.support.mesh import MeshControlPlane, request, start_sidecar  # noqa: E402

MESH = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, targetPort: 9000, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, targetPort: 9080, appProtocol: http}]}
"""
NETS = {("pointsman", False): "127.190", ("pointsman", True): "127.191",
        ("envoy", False): "127.192", ("envoy", True): "127.193"}
LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: int) -> tuple[float, float, float]:
    completed = subprocess.run(
        ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency", "-H", "Host: api", url],
        capture_output=True, text=True, timeout=seconds + 30, check=False)
    rate = wrk_requests_per_second(completed)
    found = {pct: float(value) * UNIT_MS[unit]
             for pct, value, unit in LATENCY.findall(completed.stdout)}
    return rate, found["50"], found["99"]


def new_connections_per_second(host: str, port: int, context: ssl.SSLContext | None,
                               seconds: int, threads: int = 4) -> float:
    """Connections opened, used for one GET and closed, per second (failures end the run)."""
    deadline = time.monotonic() + seconds
    counts = [0] * threads
    failures: list[BaseException] = []

    def client(index: int) -> None:
        while time.monotonic() < deadline and not failures:
            connection = http.client.HTTPSConnection(host, port, context=context, timeout=5) \
                if context is not None else http.client.HTTPConnection(host, port, timeout=5)
            try:
                connection.request("GET", "/", headers={"Host": "api"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise LoadError(f"new connection to {host}:{port}: {response.status}")
                counts[index] += 1
            except BaseException as error:
                failures.append(error)
            finally:
                connection.close()

    started = time.monotonic()
    workers = [threading.Thread(target=client, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise LoadError(f"new connections to {host}:{port} failed: {failures[0]!r}")
    return sum(counts) / (time.monotonic() - started)


def app_backend(stack: ExitStack, host: str, port: int) -> None:
    bootstrap = backend_bootstrap(port)
    bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"][
        "address"] = host
    backend = Envoy(bootstrap, name=f"bench-app-{host}")
    stack.enter_context(backend)
    backend.wait_ready()


def measure(flavour: str, mtls: bool, seconds: int, rounds: int) -> dict[str, float]:
    net = NETS[(flavour, mtls)]
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        path = Path(folder)
        (path / "mesh.yaml").write_text(MESH)
        authority, flags = write_ca(path) if mtls else (None, [])
        control_plane = MeshControlPlane(path / "mesh.yaml", *flags)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        app_backend(stack, f"{net}.3.2", 9080)
        web = start_sidecar(stack, flavour, control_plane, "web", 1, net)
        api = start_sidecar(stack, flavour, control_plane, "api", 2, net)
        for member in (web, api):
            member.proxy.wait_ready()
        eventually(lambda: request((web.outbound_ip, 8080), host="api")[0] == 200,
                   f"{flavour} web reaching api")
        runs = [wrk(f"http://{web.outbound_ip}:8080/", seconds) for _ in range(rounds)]
        handshakes = api.proxy.stat(f"listener.{api.instance_ip}_8080.ssl.handshake")
        if mtls != (handshakes > 0):
            raise LoadError(f"{flavour}: {handshakes} TLS handshakes at api's sidecar with "
                            f"mTLS {'on' if mtls else 'off'}")
        context = None
        if authority is not None:
            context = client_context(authority.trust_bundle,
                                     authority.issue("default", "web", now()), path)
        connections = new_connections_per_second(api.instance_ip, 8080, context, seconds)
        return {"rps": max(item[0] for item in runs),
                "p50": statistics.median(item[1] for item in runs),
                "p99": statistics.median(item[2] for item in runs), "handshakes": handshakes,
                "new_cx": connections}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[tuple[str, bool], dict[str, float]] = {}
    for flavour in ("pointsman", "envoy"):
        for mtls in (False, True):
            results[(flavour, mtls)] = measure(flavour, mtls, args.seconds, args.rounds)
            time.sleep(1)
    print(f"{'sidecars':<10} {'mode':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'handshakes':>10} {'new cx/s':>9}")
    for (flavour, mtls), found in results.items():
        print(f"{flavour:<10} {'mTLS' if mtls else 'plaintext':<10} {found['rps']:>9.0f} "
              f"{found['p50']:>8.2f} {found['p99']:>8.2f} {found['handshakes']:>10.0f} "
              f"{found['new_cx']:>9.0f}")
    for flavour in ("pointsman", "envoy"):
        on, off = results[(flavour, True)], results[(flavour, False)]
        print(f"{flavour}: mTLS/plaintext req/s {on['rps'] / off['rps']:.2f}, "
              f"p50 {on['p50'] / off['p50']:.2f}, p99 {on['p99'] / off['p99']:.2f}, "
              f"new connections/s {on['new_cx'] / off['new_cx']:.2f}")
    on, off = results[("pointsman", True)], results[("envoy", True)]
    print(f"mTLS Pointsman/Envoy req/s {on['rps'] / off['rps']:.2f}, "
          f"new mTLS connections/s {on['new_cx'] / off['new_cx']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_checked(main))
