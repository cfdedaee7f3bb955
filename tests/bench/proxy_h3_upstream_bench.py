"""Upstream HTTP/3 benchmark (a script, not a test): HTTP/1.1 requests/s through a sidecar
whose cluster speaks HTTP/3 (explicit http3_protocol_options, the QUIC transport socket),
beside the same sidecar with an HTTP/2 cluster, and beside Envoy 1.40 with the same HTTP/3
cluster, in one run. All proxies `--concurrency 1`.

    .venv/bin/python tests/bench/proxy_h3_upstream_bench.py [--seconds 5] [--rounds 3]

Backends: Envoy answering with a direct_response, over HTTP/3 (a QUIC listener) for the
HTTP/3 clusters and over h2c for the HTTP/2 one, so the backend is never the bottleneck.
Load: wrk -t1 -c50 (tests/bench/load_checks.py: any non-2xx answer or socket error stops
the run with status 1). Ratios printed: Pointsman HTTP/3 / Pointsman HTTP/2, and Pointsman
HTTP/3 / Envoy HTTP/3.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.load_checks import run_checked, wrk_requests_per_second  # noqa: E402
from tests.support.bootstraps import H2_OPTIONS, http_bootstrap, static_cluster  # noqa: E402
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.http3 import h3_cluster, quic_bootstrap  # noqa: E402
from tests.support.pointsman import Pointsman  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

DIRECT = [{"match": {"prefix": "/"}, "direct_response": {
    "status": 200, "body": {"inline_string": "hello from the backend\n"}}}]
ONE = ("--concurrency", "1")
ROUTE = [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}]


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True)
    return cert, key


def wrk_rps(port: int, seconds: int) -> float:
    completed = subprocess.run(["wrk", "-t1", "-c50", f"-d{seconds}s",
                                f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=300, check=False)
    return wrk_requests_per_second(completed)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="h3up-bench-"))
    cert, key = _certificate(directory)
    h3_port, h2_port = free_port(), free_port()
    h2_backend = http_bootstrap(h2_port, DIRECT, [], codec_type="AUTO")
    proxies: dict[str, dict[str, Any]] = {
        "pointsman h3": http_bootstrap(free_port(), ROUTE, [h3_cluster("up", h3_port, cert)]),
        "pointsman h2": http_bootstrap(free_port(), ROUTE, [static_cluster(
            "up", [h2_port], typed_extension_protocol_options=H2_OPTIONS)]),
        "envoy h3": http_bootstrap(free_port(), ROUTE, [h3_cluster("up", h3_port, cert)]),
    }
    results: dict[str, list[float]] = {name: [] for name in proxies}
    h3_bootstrap = quic_bootstrap(h3_port, DIRECT, [], cert, key)
    with Envoy(h3_bootstrap, name="bench-h3-backend") as h3_backend, \
            Envoy(h2_backend, name="bench-h2-backend") as h2_backend_proc, \
            Pointsman(proxies["pointsman h3"], name="bench-ps-h3", extra_args=ONE) as ps_h3, \
            Pointsman(proxies["pointsman h2"], name="bench-ps-h2", extra_args=ONE) as ps_h2, \
            Envoy(proxies["envoy h3"], name="bench-envoy-h3") as envoy_h3:
        running = {"pointsman h3": ps_h3, "pointsman h2": ps_h2, "envoy h3": envoy_h3}
        for process in (h3_backend, h2_backend_proc, *running.values()):
            process.wait_ready()
        for name in running:  # warm up: connections open, caches filled
            wrk_rps(_port(proxies[name]), 1)
        for _ in range(args.rounds):
            for name in running:
                results[name].append(wrk_rps(_port(proxies[name]), args.seconds))
    median = {name: statistics.median(values) for name, values in results.items()}
    for name, value in median.items():
        print(f"{name:14s} {value:10.0f} req/s  (rounds: "
              f"{', '.join(f'{v:.0f}' for v in results[name])})")
    print(f"Pointsman HTTP/3 upstream / HTTP/2 upstream: "
          f"{median['pointsman h3'] / median['pointsman h2']:.2f}")
    print(f"Pointsman HTTP/3 upstream / Envoy HTTP/3 upstream: "
          f"{median['pointsman h3'] / median['envoy h3']:.2f}")


def _port(bootstrap: dict[str, Any]) -> int:
    return int(bootstrap["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"])


if __name__ == "__main__":
    sys.exit(run_checked(main))
