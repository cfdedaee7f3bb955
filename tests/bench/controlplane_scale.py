"""Control-plane scale benchmark (a script, not a test).

N simulated ADS clients (grpc aio channels, one HTTP/2 connection each, spread over worker
processes) subscribe to CDS (wildcard) and EDS (all cluster names) of a snapshot of 1,000 EDS
clusters with 2 endpoints each, and ACK every response. Measured:
- initial convergence: from the first connect to every client's EDS ACK;
- change convergence: from rewriting the resources file (one endpoint of every cluster moves)
  to the last client's ACK of the new endpoints, including the file poll (0.1 s here); the
  median of --rounds changes;
- memory per connected client: the control plane's RSS after all clients converged minus its
  RSS with the snapshot loaded and no client, divided by N.

    .venv/bin/python tests/bench/controlplane_scale.py            # N = 100 and 1000
    .venv/bin/python tests/bench/controlplane_scale.py --clients 100
    .venv/bin/python tests/bench/controlplane_scale.py --delta --changed 1   # delta xDS
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.support.ports import free_port, wait_for_port  # noqa: E402
from tests.support.processes import ManagedProcess, python_argv  # noqa: E402

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"


def resources(clusters: int, port_shift: int, changed: int) -> dict[str, Any]:
    """`changed` clusters (the first ones) get their second endpoint moved by `port_shift`."""
    items: list[dict[str, Any]] = []
    for index in range(clusters):
        name = f"service-{index:04d}"
        items.append({"@type": CLUSTER, "name": name, "type": "EDS", "connect_timeout": "1s",
                      "eds_cluster_config": {"eds_config": {"ads": {}}}})
        ports = (20000 + index, 40000 + index + (port_shift if index < changed else 0))
        items.append({"@type": ENDPOINTS, "cluster_name": name, "endpoints": [{
            "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": port}}}} for port in ports]}]})
    return {"resources": items}


def write_json(path: Path, document: dict[str, Any]) -> None:
    partial = path.with_name(".partial.json")
    partial.write_text(json.dumps(document))
    partial.replace(path)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


# ---- worker process: many simulated ADS clients ---------------------------------------------

class SimulatedClient:
    """Subscribes like Envoy (CDS wildcard, then EDS for every cluster) and ACKs everything."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.eds_version = ""
        self.eds_acked_at = 0.0
        self.converged = asyncio.Event()
        self.updated = asyncio.Event()

    async def run(self, target: str) -> None:
        import grpc
        from envoy.service.discovery.v3 import discovery_pb2 as pb

        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.stream_stream(ADS_METHOD,
                                         request_serializer=pb.DiscoveryRequest.SerializeToString,
                                         response_deserializer=pb.DiscoveryResponse.FromString)()
            node = {"id": f"bench-{self.index}", "cluster": "bench"}
            await call.write(pb.DiscoveryRequest(type_url=CLUSTER, node=node))
            eds_names: list[str] = []
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                ack = pb.DiscoveryRequest(type_url=response.type_url,
                                          version_info=response.version_info,
                                          response_nonce=response.nonce)
                if response.type_url == CLUSTER:
                    await call.write(ack)
                    if not eds_names:
                        eds_names = sorted(self._cluster_names(response))
                        await call.write(pb.DiscoveryRequest(type_url=ENDPOINTS,
                                                             resource_names=eds_names))
                else:
                    ack.resource_names.extend(eds_names)
                    await call.write(ack)
                    self._acked(response.version_info)

    @staticmethod
    def _cluster_names(response: Any) -> list[str]:
        from envoy.config.cluster.v3 import cluster_pb2
        return [cluster_pb2.Cluster.FromString(item.value).name for item in response.resources]

    def _acked(self, version: str) -> None:
        self.eds_version, self.eds_acked_at = version, time.time()
        self.converged.set()
        self.updated.set()


class DeltaSimulatedClient(SimulatedClient):
    """The same subscriptions over delta xDS (DeltaAggregatedResources)."""

    async def run(self, target: str) -> None:
        import grpc
        from envoy.service.discovery.v3 import discovery_pb2 as pb

        async with grpc.aio.insecure_channel(target) as channel:
            call = channel.stream_stream(
                DELTA_METHOD, request_serializer=pb.DeltaDiscoveryRequest.SerializeToString,
                response_deserializer=pb.DeltaDiscoveryResponse.FromString)()
            node = {"id": f"bench-delta-{self.index}", "cluster": "bench"}
            await call.write(pb.DeltaDiscoveryRequest(type_url=CLUSTER, node=node))
            subscribed = False
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                await call.write(pb.DeltaDiscoveryRequest(type_url=response.type_url,
                                                          response_nonce=response.nonce))
                if response.type_url == CLUSTER and not subscribed:
                    subscribed = True
                    names = sorted(item.name for item in response.resources)
                    await call.write(pb.DeltaDiscoveryRequest(
                        type_url=ENDPOINTS, resource_names_subscribe=names))
                elif response.type_url == ENDPOINTS:
                    self._acked(response.system_version_info)


async def worker_main(target: str, first: int, count: int, delta: bool,
                      pipe: Connection) -> None:
    kind = DeltaSimulatedClient if delta else SimulatedClient
    clients = [kind(first + offset) for offset in range(count)]
    async with asyncio.TaskGroup() as tasks:
        runners = [tasks.create_task(client.run(target)) for client in clients]
        await asyncio.gather(*(client.converged.wait() for client in clients))
        pipe.send(("converged", max(client.eds_acked_at for client in clients)))
        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, pipe.recv) == "arm":
            baselines = [client.eds_version for client in clients]
            pipe.send(("armed", 0.0))
            for client, baseline in zip(clients, baselines, strict=True):
                while client.eds_version == baseline:
                    client.updated.clear()
                    await client.updated.wait()
            pipe.send(("changed", max(client.eds_acked_at for client in clients)))
        for runner in runners:
            runner.cancel()


def worker_entry(target: str, first: int, count: int, delta: bool, pipe: Connection) -> None:
    try:
        asyncio.run(worker_main(target, first, count, delta, pipe))
    except BaseExceptionGroup as group:  # cancelled runners at stop
        if not all(isinstance(error, asyncio.CancelledError) for error in group.exceptions):
            raise


# ---- the run --------------------------------------------------------------------------------

def measure(clients: int, clusters: int, workers: int, rounds: int, delta: bool,
            changed: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="cp-bench-"))
    config = folder / "resources.json"
    write_json(config, resources(clusters, 0, changed))
    port, admin = free_port(), free_port()
    server = ManagedProcess(python_argv("-m", "controlplane", "--resources", str(config),
                                        "--listen", f"127.0.0.1:{port}",
                                        "--admin", f"127.0.0.1:{admin}",
                                        "--poll-interval", "0.1", "--log-level", "warning"),
                            name="controlplane-bench", cwd=REPO)
    context = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    try:
        wait_for_port(port, timeout=60)
        time.sleep(1.0)
        rss_before = rss_kib(server.pid)
        started = time.time()
        share = -(-clients // workers)
        for worker in range(workers):
            first, count = worker * share, min(share, clients - worker * share)
            if count <= 0:
                break
            parent, child = context.Pipe()
            process = context.Process(target=worker_entry, daemon=True,
                                      args=(f"127.0.0.1:{port}", first, count, delta, child))
            process.start()
            pipes.append(parent)
            processes.append(process)
        initial = max(pipe.recv()[1] for pipe in pipes) - started
        time.sleep(1.0)
        rss_after = rss_kib(server.pid)
        changes = []
        for round_number in range(1, rounds + 1):
            for pipe in pipes:
                pipe.send("arm")
            for pipe in pipes:
                pipe.recv()
            changed_at = time.time()
            write_json(config, resources(clusters, round_number, changed))
            changes.append(max(pipe.recv()[1] for pipe in pipes) - changed_at)
        for pipe in pipes:
            pipe.send("stop")
        return {"protocol": "delta" if delta else "sotw", "clients": clients,
                "clusters": clusters, "clusters_changed": changed,
                "initial_convergence_s": initial,
                "change_to_last_ack_s": sorted(changes)[len(changes) // 2],
                "change_to_last_ack_all_s": [round(item, 3) for item in changes],
                "rss_idle_mib": rss_before / 1024, "rss_connected_mib": rss_after / 1024,
                "kib_per_client": (rss_after - rss_before) / clients}
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, action="append")
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="file changes timed (median)")
    parser.add_argument("--delta", action="store_true", help="delta xDS clients instead of SotW")
    parser.add_argument("--changed", type=int, default=None,
                        help="clusters whose endpoints change per round (default: all)")
    args = parser.parse_args()
    for clients in args.clients or [100, 1000]:
        changed = args.clusters if args.changed is None else args.changed
        result = measure(clients, args.clusters, args.workers, args.rounds, args.delta, changed)
        print(json.dumps({key: round(value, 3) if isinstance(value, float) else value
                          for key, value in result.items()}), flush=True)


if __name__ == "__main__":
    main()
