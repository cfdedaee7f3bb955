"""`pointsman controlplane --workers 2`, the real process: sidecars on their own connections are
spread over both workers by the kernel (SO_REUSEPORT), each gets the configuration and its
changes, /status and /metrics gather both workers, a second control plane cannot share the
port, and a worker that dies ends the control plane with one line."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import time
from pathlib import Path

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2 as pb

from tests.conformance.controlplane.support import ControlPlane, write_resources
from tests.integration.controlplane.certificates import make_certificates
from tests.support.processes import ManagedProcess, python_argv
from tests.unit.controlplane.builders import cluster, endpoints

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
SIDECARS = 16
TIMEOUT = 20


async def sidecar(port: int, index: int, versions: list[str], changed: asyncio.Event) -> None:
    """Subscribes CDS then EDS like Envoy and ACKs, on a connection of its own; records each
    EDS version it receives."""
    options = (("grpc.use_local_subchannel_pool", 1),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        call = channel.stream_stream(ADS, request_serializer=pb.DiscoveryRequest.SerializeToString,
                                     response_deserializer=pb.DiscoveryResponse.FromString)()
        await call.write(pb.DiscoveryRequest(type_url=CDS, node={"id": f"sidecar-{index}"}))
        while (response := await call.read()) is not grpc.aio.EOF:
            ack = pb.DiscoveryRequest(type_url=response.type_url, response_nonce=response.nonce,
                                      version_info=response.version_info)
            if response.type_url == CDS:
                await call.write(ack)
                await call.write(pb.DiscoveryRequest(type_url=EDS, resource_names=["a"]))
            else:
                ack.resource_names.append("a")
                await call.write(ack)
                versions.append(response.version_info)
                changed.set()


async def until(check, changed: asyncio.Event) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not check():
            changed.clear()
            await changed.wait()


@pytest.mark.slow
async def test_two_workers_share_the_port_and_serve_every_change(tmp_path: Path):
    config = tmp_path / "mesh.yaml"
    write_resources(config, [cluster("a"), endpoints("a", 1)])
    with ControlPlane(config, "--workers", "2", "--debounce-after", "0") as server:
        await asyncio.to_thread(server.wait_ready)
        versions: list[list[str]] = [[] for _ in range(SIDECARS)]
        changed = asyncio.Event()
        async with asyncio.TaskGroup() as tasks:
            runners = [tasks.create_task(sidecar(server.port, index, versions[index], changed))
                       for index in range(SIDECARS)]
            await until(lambda: all(versions), changed)
            status = json.loads((await asyncio.to_thread(server.admin, "/status"))[1])
            assert len(status["nodes"]) == SIDECARS
            assert {node["worker"] for node in status["nodes"]} == {0, 1}
            write_resources(config, [cluster("a"), endpoints("a", 2)])
            await until(lambda: all(len(seen) == 2 for seen in versions), changed)
            assert len({seen[-1] for seen in versions}) == 1  # the same version everywhere
            metrics = (await asyncio.to_thread(server.admin, "/metrics"))[1]
            assert f"pointsman_xds_connected_streams {SIDECARS}" in metrics
            assert f'pointsman_xds_pushes_total{{type="endpoint"}} {2 * SIDECARS}' in metrics
            for runner in runners:
                runner.cancel()
        second = ManagedProcess(python_argv("-m", "controlplane", "--resources", str(config),
                                            "--listen", f"127.0.0.1:{server.port}",
                                            "--workers", "2"), name="second")
        assert second.popen.wait(timeout=30) == 1
        assert "Address already in use" in second.output()


@pytest.mark.slow
def test_a_worker_that_dies_ends_the_control_plane(tmp_path: Path):
    config = tmp_path / "mesh.yaml"
    write_resources(config, [cluster("a"), endpoints("a", 1)])
    with ControlPlane(config, "--workers", "2") as server:
        server.wait_ready()
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        workers = [int(pid) for pid in children  # not multiprocessing's resource tracker
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)
        assert server.popen.wait(timeout=TIMEOUT) == 1
        assert f"worker 0 (pid {workers[0]}) exited" in server.output()
        time.sleep(0.5)
        assert not Path(f"/proc/{workers[1]}").exists() or "Z" in Path(
            f"/proc/{workers[1]}/stat").read_text().split()[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_workers_serve_over_tls(tmp_path: Path):
    certificates = make_certificates(tmp_path)
    config = tmp_path / "mesh.yaml"
    write_resources(config, [cluster("a"), endpoints("a", 1)])
    with ControlPlane(config, "--workers", "2", "--tls-cert", str(tmp_path / "server.pem"),
                      "--tls-key", str(tmp_path / "server.key")) as server:
        await asyncio.to_thread(server.wait_ready)
        credentials = grpc.ssl_channel_credentials(root_certificates=certificates["ca.pem"])
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
            call = channel.stream_stream(
                ADS, request_serializer=pb.DiscoveryRequest.SerializeToString,
                response_deserializer=pb.DiscoveryResponse.FromString)()
            await call.write(pb.DiscoveryRequest(type_url=CDS, node={"id": "tls"}))
            async with asyncio.timeout(TIMEOUT):
                response = await call.read()
            assert response.type_url == CDS and len(response.resources) == 1
            call.cancel()
