"""HTTP/3 benchmark (a script, not a test): the sidecar's HTTP/3 beside its HTTP/2 and beside
Envoy's HTTP/3, in one run, both proxies `--concurrency 1`, the same backend.

    .venv/bin/python tests/bench/proxy_http3_bench.py [--seconds 5] [--rounds 3] [--streams 20]

Backend: an Envoy answering every request with a 100-byte direct_response over HTTP/1.1, so it
is never the bottleneck. Clients: Debian's h2load (1.52) has no QUIC and curl 7.88 no HTTP/3,
so the HTTP/3 load is aioquic's client, and the HTTP/2 load the same closed loop over the `h2`
library (tests/integration/proxy/http/clients.py), each in its own process: one connection,
`--streams` requests in flight, for `--seconds`. Per load: requests/s, p50/p99 latency (ms,
client side), and CPU milliseconds per request of the proxy process (utime+stime from /proc),
the figure that does not depend on the client's own speed. Rounds alternate the order of the
loads; the table gives medians. Any non-200 answer stops the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.proxy_http_bench import (  # noqa: E402
    _cluster,
    _listener,
    backend_bootstrap,
    cpu_seconds,
)
from tests.support.envoy import Envoy  # noqa: E402
from tests.support.http3 import QUIC_TRANSPORT  # noqa: E402
from tests.support.pointsman import Pointsman  # noqa: E402
from tests.support.ports import free_port  # noqa: E402

ROUTE = [{"match": {"prefix": "/"}, "route": {"cluster": "backend"}}]


def _quic_listener(name: str, port: int, cert: Path, key: Path) -> dict[str, Any]:
    listener = _listener(name, port, ROUTE)
    listener["address"]["socket_address"]["protocol"] = "UDP"
    listener["udp_listener_config"] = {"quic_options": {}}
    chain = listener["filter_chains"][0]
    chain["filters"][0]["typed_config"]["codec_type"] = "HTTP3"
    chain["transport_socket"] = {"name": "envoy.transport_sockets.quic", "typed_config": {
        "@type": QUIC_TRANSPORT, "downstream_tls_context": {"common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                  "private_key": {"filename": str(key)}}]}}}}
    return listener


def proxy_bootstrap(ports: dict[str, int], backend: int, cert: Path, key: Path
                    ) -> dict[str, Any]:
    return {"static_resources": {
        "listeners": [_quic_listener("h3", ports["h3"], cert, key),
                      _listener("h2", ports["h2"], ROUTE)],
        "clusters": [_cluster("backend", backend)]}}


# --- the client side (run in its own process: `--client h3|h2 PORT SECONDS STREAMS`) ---------


async def _closed_loop(request: Any, seconds: float, streams: int) -> list[float]:
    times: list[float] = []
    deadline = time.monotonic() + seconds

    async def one_stream() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status = await request()
            if status != 200:
                raise SystemExit(f"a request answered {status}")
            times.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(one_stream() for _ in range(streams)))
    return times


async def _client(kind: str, port: int, seconds: float, streams: int) -> list[float]:
    if kind == "h3":
        from tests.support.http3 import h3_client

        async with h3_client(port) as client:
            async def h3() -> int:
                return (await client.request("GET", "/")).status
            await _closed_loop(h3, 0.5, streams)  # warm-up
            return await _closed_loop(h3, seconds, streams)
    from tests.integration.proxy.http.clients import H2Client

    async with H2Client(port) as h2client:
        async def h2() -> int:
            return (await h2client.request("GET", "/")).status
        await _closed_loop(h2, 0.5, streams)
        return await _closed_loop(h2, seconds, streams)


def client_main(kind: str, port: int, seconds: float, streams: int) -> None:
    times = asyncio.run(_client(kind, port, seconds, streams))
    print(json.dumps({"count": len(times), "seconds": seconds,
                      "p50": _percentile(times, 0.5), "p99": _percentile(times, 0.99)}))


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- the driver ----------------------------------------------------------------------------------


def run_load(kind: str, port: int, pid: int, seconds: float, streams: int) -> dict[str, float]:
    before = cpu_seconds(pid)
    done = subprocess.run([sys.executable, __file__, "--client", kind, str(port), str(seconds),
                           str(streams)], capture_output=True, text=True, timeout=300,
                          check=False)
    used = cpu_seconds(pid) - before
    if done.returncode != 0:
        raise SystemExit(f"{kind} load on {port} failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    count = result["count"]
    return {"rps": count / seconds, "p50": result["p50"], "p99": result["p99"],
            # the warm-up's requests are in the CPU figure too: at most 0.5 s of 5, noted
            "cpu_ms": used * 1000 / count}


def certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--client", nargs=4)
    args = parser.parse_args()
    if args.client:
        kind, port, seconds, streams = args.client
        client_main(kind, int(port), float(seconds), int(streams))
        return 0
    import tempfile

    cert, key = certificate(Path(tempfile.mkdtemp(prefix="h3bench-")))
    backend_port = free_port()
    ours_ports = {"h3": free_port(), "h2": free_port()}
    envoy_ports = {"h3": free_port(), "h2": free_port()}
    backend = Envoy(backend_bootstrap(backend_port), name="h3bench-backend")
    ours = Pointsman(proxy_bootstrap(ours_ports, backend_port, cert, key), name="h3bench-ours")
    envoy = Envoy(proxy_bootstrap(envoy_ports, backend_port, cert, key), name="h3bench-envoy")
    loads = {
        "Pointsman HTTP/3": (ours_ports["h3"], ours, "h3"),
        "Pointsman HTTP/2": (ours_ports["h2"], ours, "h2"),
        "Envoy HTTP/3": (envoy_ports["h3"], envoy, "h3"),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in loads}
    try:
        for proxy in (backend, ours, envoy):
            proxy.wait_ready()
        for round_index in range(args.rounds):
            order = list(loads) if round_index % 2 == 0 else list(reversed(loads))
            for name in order:
                port, proxy, kind = loads[name]
                samples[name].append(run_load(kind, port, proxy.pid, args.seconds,
                                              args.streams))
    finally:
        for proxy in (envoy, ours, backend):
            proxy.stop()
    print(f"one connection, {args.streams} streams in flight, {args.seconds:g} s x "
          f"{args.rounds} rounds (medians)")
    print(f"{'':20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    medians = {}
    for name, runs in samples.items():
        medians[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        m = medians[name]
        print(f"{name:20} {m['rps']:8.0f} {m['p50']:8.2f} {m['p99']:8.2f} {m['cpu_ms']:11.3f}")
    ours_h3, ours_h2, envoy_h3 = (medians[n] for n in loads)
    print(f"Pointsman HTTP/3 / Pointsman HTTP/2: req/s {ours_h3['rps'] / ours_h2['rps']:.2f}, "
          f"CPU/req {ours_h3['cpu_ms'] / ours_h2['cpu_ms']:.2f}")
    print(f"Pointsman HTTP/3 / Envoy HTTP/3:     req/s {ours_h3['rps'] / envoy_h3['rps']:.2f}, "
          f"CPU/req {ours_h3['cpu_ms'] / envoy_h3['cpu_ms']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
