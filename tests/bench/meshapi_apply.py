"""The mesh API at scale (a script, not a test): `pointsman apply` of a 1,000-Service mesh
(an HTTPRoute with a canary split and a BackendTrafficPolicy per Service, as
tests/bench/mesh_compile.py) to 100 connected sidecars, beside the raw-resource path serving
the same bytes.

N simulated sidecars (SotW ADS clients, spread over worker processes) subscribe as Envoy
does: CDS and LDS wildcard, then EDS for every EDS cluster and RDS for every route table the
listeners name, and ACK every response. Each is a mesh member (node cluster svcI, namespace,
instance_ip), connected before anything is applied.

- mesh API: `pointsman controlplane --store file:...`; the clock starts as `pointsman apply -f
  mesh.yaml` starts (its process included) and stops at the last ACK, once no ACK came for a
  quiet period and every client holds all four types (registrations as endpoints, and the
  EDS pushes they cause, are part of it);
  then one HTTPRoute changed, applied alone, timed the same way;
- raw resources: `pointsman controlplane --resources FILE`, the clients connected to an empty
  file; the clock starts as FILE is written with what one mesh sidecar receives (every node
  gets it) and stops the same way (the 0.1 s file poll included).

Measured for each: time to all ACKed, control-plane CPU seconds (user + system, from
/proc/PID/stat) from the start to the last ACK, RSS after and peak (VmHWM), and the bytes of
resources one sidecar holds (the mean over clients).

    .venv/bin/python tests/bench/meshapi_apply.py [--services 1000] [--sidecars 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.mesh_compile import mesh_text  # noqa: E402
from tests.support.ports import free_port, wait_for_port  # noqa: E402
from tests.support.processes import ManagedProcess, http_get, python_argv  # noqa: E402

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
POINTSMAN = str(Path(sys.executable).with_name("pointsman"))
QUIET = 2.0  # seconds without an ACK: converged


def node_of(index: int, namespaces: int) -> dict[str, Any]:
    return {"id": f"svc{index}-0", "cluster": f"svc{index}",
            "metadata": {"namespace": f"ns{index % namespaces}",
                         "instance_ip": f"127.10.{index // 250}.{index % 250 + 1}",
                         "outbound_ip": f"127.11.{index // 250}.{index % 250 + 1}"}}


# ---- worker process: simulated sidecars ----------------------------------------------------

class Sidecar:
    def __init__(self, node: dict[str, Any]) -> None:
        self.node = node
        self.last_ack = 0.0
        self.bytes: dict[str, int] = {}
        self.eds: list[str] = []
        self.rds: list[str] = []

    def complete(self) -> bool:
        return (all(self.bytes.get(kind, 0) > 0 for kind in (CLUSTER, LISTENER))
                and (not self.eds or self.bytes.get(ENDPOINTS, 0) > 0)
                and (not self.rds or self.bytes.get(ROUTE, 0) > 0))

    async def run(self, target: str) -> None:
        import grpc
        from envoy.service.discovery.v3 import discovery_pb2 as pb
        from google.protobuf import json_format

        node = json_format.ParseDict(self.node, pb.DiscoveryRequest().node)
        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.stream_stream(
                ADS, request_serializer=pb.DiscoveryRequest.SerializeToString,
                response_deserializer=pb.DiscoveryResponse.FromString)()
            await call.write(pb.DiscoveryRequest(type_url=CLUSTER, node=node))
            await call.write(pb.DiscoveryRequest(type_url=LISTENER, node=node))
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                kind = response.type_url
                self.bytes[kind] = sum(len(item.value) for item in response.resources)
                names = {ENDPOINTS: self.eds, ROUTE: self.rds}.get(kind, [])
                await call.write(pb.DiscoveryRequest(
                    type_url=kind, version_info=response.version_info,
                    response_nonce=response.nonce, resource_names=names, node=node))
                self.last_ack = time.time()
                if kind == CLUSTER:
                    wanted = sorted(_eds_names(response))
                    if wanted != self.eds:
                        self.eds = wanted
                        await call.write(pb.DiscoveryRequest(type_url=ENDPOINTS,
                                                             resource_names=wanted, node=node))
                elif kind == LISTENER:
                    wanted = sorted(_rds_names(response))
                    if wanted != self.rds:
                        self.rds = wanted
                        await call.write(pb.DiscoveryRequest(type_url=ROUTE,
                                                             resource_names=wanted, node=node))


def _eds_names(response: Any) -> set[str]:
    from envoy.config.cluster.v3 import cluster_pb2
    names = set()
    for item in response.resources:
        cluster = cluster_pb2.Cluster.FromString(item.value)
        if cluster.type == cluster_pb2.Cluster.EDS:
            names.add(cluster.eds_cluster_config.service_name or cluster.name)
    return names


def _rds_names(response: Any) -> set[str]:
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm,
    )
    names = set()
    for item in response.resources:
        listener = listener_pb2.Listener.FromString(item.value)
        for chain in listener.filter_chains:
            for network_filter in chain.filters:
                typed = network_filter.typed_config
                if typed.type_url.endswith("HttpConnectionManager"):
                    manager = hcm.HttpConnectionManager.FromString(typed.value)
                    if manager.HasField("rds"):
                        names.add(manager.rds.route_config_name)
    return names


async def worker_main(target: str, nodes: list[dict[str, Any]], pipe: Connection) -> None:
    sidecars = [Sidecar(node) for node in nodes]
    tasks = [asyncio.create_task(sidecar.run(target)) for sidecar in sidecars]
    loop = asyncio.get_running_loop()
    pipe.send("connected")
    while await loop.run_in_executor(None, pipe.recv) == "report":
        pipe.send({"complete": sum(sidecar.complete() for sidecar in sidecars),
                   "last_ack": max(sidecar.last_ack for sidecar in sidecars),
                   "first_ack": min(sidecar.last_ack for sidecar in sidecars),
                   "bytes": [sum(sidecar.bytes.values()) for sidecar in sidecars],
                   "failed": [str(task.exception()) for task in tasks
                              if task.done() and not task.cancelled() and task.exception()]})
    for task in tasks:
        task.cancel()


def worker_entry(target: str, nodes: list[dict[str, Any]], pipe: Connection) -> None:
    asyncio.run(worker_main(target, nodes, pipe))


# ---- measuring -----------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> tuple[float, float]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


class Clients:
    def __init__(self, port: int, count: int, namespaces: int, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        share = -(-count // workers)
        for first in range(0, count, share):
            nodes = [node_of(index, namespaces) for index in range(first, min(count,
                                                                              first + share))]
            parent, child = context.Pipe()
            process = context.Process(target=worker_entry, daemon=True,
                                      args=(f"127.0.0.1:{port}", nodes, child))
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)
        for pipe in self.pipes:
            assert pipe.recv() == "connected"
        self.count = count

    def report(self) -> tuple[int, float, float, list[int]]:
        for pipe in self.pipes:
            pipe.send("report")
        reports = [pipe.recv() for pipe in self.pipes]
        failed = [item for report in reports for item in report["failed"]]
        if failed:
            raise RuntimeError(f"clients failed: {failed[:3]}")
        return (sum(report["complete"] for report in reports),
                min(report["first_ack"] for report in reports),
                max(report["last_ack"] for report in reports),
                [size for report in reports for size in report["bytes"]])

    def converged(self, started: float, timeout: float = 600.0) -> tuple[float, list[int]]:
        """The last ACK's time, once every client holds every type, has ACKed something since
        `started`, and none ACKed for QUIET seconds."""
        while time.time() - started < timeout:
            time.sleep(0.25)
            complete, first_ack, last_ack, sizes = self.report()
            if complete == self.count and first_ack > started and time.time() - last_ack > QUIET:
                return last_ack, sizes
        raise RuntimeError(f"not converged in {timeout} s")

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send("stop")
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def control_plane(*options: str) -> tuple[ManagedProcess, int, int]:
    port, admin = free_port(), free_port()
    server = ManagedProcess(python_argv("-m", "controlplane", *options,
                                        "--listen", f"127.0.0.1:{port}",
                                        "--admin", f"127.0.0.1:{admin}",
                                        "--log-level", "warning"), name="cp-bench", cwd=REPO)
    wait_for_port(port, timeout=60)
    deadline = time.time() + 60
    while http_get(f"http://127.0.0.1:{admin}/ready")[0] != 200:
        assert time.time() < deadline, "control plane not ready"
        time.sleep(0.2)
    return server, port, admin


def figures(server: ManagedProcess, started: float, cpu_before: float, done: float,
            sizes: list[int], **extra: Any) -> dict[str, Any]:
    rss, peak = memory_mib(server.pid)
    return {**extra, "to_all_acked_s": round(done - started, 2),
            "cpu_s": round(cpu_seconds(server.pid) - cpu_before, 2),
            "rss_mib": round(rss), "peak_rss_mib": round(peak),
            "kib_per_sidecar": round(sum(sizes) / len(sizes) / 1024)}


def measure_api(folder: Path, text: str, args: argparse.Namespace) -> dict[str, Any]:
    mesh = folder / "mesh.yaml"
    mesh.write_text(text)
    api_port = free_port()
    server, port, _ = control_plane("--store", f"file:{folder / 'state'}",
                                    "--api", f"127.0.0.1:{api_port}")
    clients = None
    try:
        clients = Clients(port, args.sidecars, args.namespaces, args.workers)
        time.sleep(2.0)
        cpu_before = cpu_seconds(server.pid)
        started = time.time()
        applied = subprocess.run([POINTSMAN, "apply", "-f", str(mesh),
                                  "--server", f"127.0.0.1:{api_port}", "-o", "json"],
                                 capture_output=True, cwd=REPO, check=False)
        apply_done = time.time()
        if applied.returncode != 0:
            raise RuntimeError(applied.stderr.decode()[-2000:])
        done, sizes = clients.converged(started)
        result = figures(server, started, cpu_before, done, sizes, path="mesh API",
                         apply_returned_s=round(apply_done - started, 2))
        # Then one HTTPRoute changed (svc0's path match), applied alone.
        route = folder / "route.yaml"
        route.write_text(mesh_text(args.services, args.namespaces, "x").split("---\n")[1])
        cpu_before = cpu_seconds(server.pid)
        started = time.time()
        applied = subprocess.run([POINTSMAN, "apply", "-f", str(route),
                                  "--server", f"127.0.0.1:{api_port}"],
                                 capture_output=True, cwd=REPO, check=False)
        apply_done = time.time()
        if applied.returncode != 0:
            raise RuntimeError(applied.stderr.decode()[-2000:])
        done, _ = clients.converged(started)
        result["one_route"] = {"apply_returned_s": round(apply_done - started, 2),
                               "to_all_acked_s": round(done - started, 2),
                               "cpu_s": round(cpu_seconds(server.pid) - cpu_before, 2)}
        return result
    finally:
        if clients is not None:
            clients.close()
        server.stop()


def raw_resources(text: str, namespaces: int) -> dict[str, Any]:
    """What one mesh sidecar (svc0) receives, as an Envoy resources file."""
    from google.protobuf import json_format

    import controlplane.resources  # noqa: F401  (registers every type the resources use)
    from controlplane.mesh import load_objects, resolve
    from controlplane.mesh.compile.compiler import MeshCompiler
    from controlplane.mesh.compile.node import MeshNode

    node = node_of(0, namespaces)
    compiled = MeshCompiler(resolve(load_objects(text, "bench"))).compile_node(MeshNode(
        node["id"], "Service", node["cluster"], node["metadata"]["namespace"],
        node["metadata"]["instance_ip"], "127.0.0.1", node["metadata"]["outbound_ip"]))
    return {"resources": [json_format.MessageToDict(item.packed)
                          for items in compiled.resources.values() for item in items.values()]}


def measure_raw(folder: Path, text: str, args: argparse.Namespace) -> dict[str, Any]:
    document = raw_resources(text, args.namespaces)
    resources = folder / "resources.json"
    resources.write_text(json.dumps({"resources": []}))
    server, port, _ = control_plane("--resources", str(resources), "--poll-interval", "0.1")
    clients = None
    try:
        clients = Clients(port, args.sidecars, args.namespaces, args.workers)
        time.sleep(2.0)
        cpu_before = cpu_seconds(server.pid)
        started = time.time()
        partial = folder / ".partial.json"
        partial.write_text(json.dumps(document))
        partial.replace(resources)
        done, sizes = clients.converged(started)
        return figures(server, started, cpu_before, done, sizes, path="raw resources")
    finally:
        if clients is not None:
            clients.close()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--sidecars", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--only", choices=["api", "raw"])
    args = parser.parse_args()
    text = mesh_text(args.services, args.namespaces)
    for name, measure in (("api", measure_api), ("raw", measure_raw)):
        if args.only in (None, name):
            with tempfile.TemporaryDirectory(prefix="meshapi-bench-") as folder:
                result = measure(Path(folder), text, args)
            print(json.dumps({"services": args.services, "sidecars": args.sidecars, **result}),
                  flush=True)


if __name__ == "__main__":
    main()
