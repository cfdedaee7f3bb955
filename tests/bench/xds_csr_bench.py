"""Benchmark (a script, not a test): the certificate service (docs/mesh-security.md, "The xDS
trust model"), what a fleet of sidecars starting or renewing at once costs the control plane.

    .venv/bin/python tests/bench/xds_csr_bench.py [--seconds 5] [--threads 4]

A control plane with a file store, `--tls` on the veth address of a network namespace of its own
(tests/support/xds_mtls.py; run as root) so xDS is mutual TLS, and `--ca-listen`. For
`--seconds`, `--threads` client threads each call CreateCertificate in a loop, each call on a
new channel (a new TLS connection, as a starting sidecar makes): first bootstrap calls (join
token, server TLS on --ca-listen), then renewals (client certificate, mutual TLS on --listen).
Every CSR is for a fresh P-256 key made by the client before the timer starts, so the figure is
the control plane's side (TLS handshake, the token lookup in the store, CSR checks, signing)
plus the Python client's handshake. Printed: calls/s, p50/p99 latency per kind, and the control
plane's CPU seconds per call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from proxy.deploy import certificate
from tests.support.xds_mtls import now, start_mesh

BETA = "spiffe://cluster.local/ns/default/sa/beta"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def run(kind: str, seconds: float, threads: int, call: object) -> list[float]:
    latencies: list[float] = []
    lock = threading.Lock()
    requests = [certificate.new_request(BETA) for _ in range(4000)]
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        position = index
        while time.monotonic() < deadline:
            request = requests[position % len(requests)]
            position += threads
            started = time.perf_counter()
            call(request)  # type: ignore[operator]
            with lock:
                latencies.append(time.perf_counter() - started)

    pool = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return latencies


def report(kind: str, latencies: list[float], seconds: float, cpu: float) -> None:
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{kind:<28} {len(latencies) / seconds:8.1f} calls/s   p50 {cuts[49] * 1000:6.1f} ms"
          f"   p99 {cuts[98] * 1000:6.1f} ms   control plane {cpu / len(latencies) * 1000:5.2f}"
          " CPU-ms/call")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=4)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        control_plane = start_mesh(stack, Path(folder))
        root = control_plane.authority().trust_bundle
        token = control_plane.token("beta")
        first = certificate.Endpoint(control_plane.ca_server, root)
        chain = certificate.request_certificate(first, probe := certificate.new_request(BETA),
                                                token=token)
        issued = certificate.Issued.from_chain(chain, probe, now())
        renewal = certificate.Endpoint(control_plane.xds, root)
        client = (issued.chain_pem, issued.key_pem)
        for kind, call in (
                ("bootstrap (token, TLS)",
                 lambda request: certificate.request_certificate(first, request, token=token)),
                ("renewal (certificate, mTLS)",
                 lambda request: certificate.request_certificate(renewal, request,
                                                                 client=client))):
            before = cpu_seconds(control_plane.pid)
            latencies = run(kind, options.seconds, options.threads, call)
            report(kind, latencies, options.seconds, cpu_seconds(control_plane.pid) - before)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
