"""The grpcio servicers on loopback with an in-process control plane: ADS and a per-type
service, a live file change, a NACK recorded in the admin status, TLS and mutual TLS."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from envoy.service.discovery.v3 import discovery_pb2 as pb
from google.rpc import status_pb2

from controlplane.admin import AdminServer
from controlplane.cache import SnapshotCache
from controlplane.observe import Observer
from controlplane.server import DiscoveryServer
from controlplane.sources.files import FileSource
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT
from tests.integration.controlplane.certificates import make_certificates
from tests.unit.controlplane.builders import cluster, endpoints

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
CDS = "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters"
TIMEOUT = 10


def write(path: Path, resources: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump({"resources": resources}))


@asynccontextmanager
async def control_plane(config: Path, credentials: grpc.ServerCredentials | None = None
                        ) -> AsyncIterator[tuple[int, FileSource, AdminServer]]:
    cache = SnapshotCache()
    observer = Observer(cache)
    source = FileSource(config, cache, interval=0.05, on_error=observer.config_rejected)
    assert source.poll()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(DiscoveryServer(cache, observer).generic_handlers())
    port = (server.add_secure_port("127.0.0.1:0", credentials) if credentials
            else server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    admin = AdminServer(observer, ready=lambda: True)
    try:
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(source.run())
            yield port, source, admin
            watcher.cancel()
    finally:
        await server.stop(grace=None)


def stream(channel: grpc.aio.Channel, method: str) -> grpc.aio.StreamStreamCall:
    return channel.stream_stream(method, request_serializer=pb.DiscoveryRequest.SerializeToString,
                                 response_deserializer=pb.DiscoveryResponse.FromString)()


async def read(call: grpc.aio.StreamStreamCall) -> pb.DiscoveryResponse:
    response = await asyncio.wait_for(call.read(), TIMEOUT)
    assert isinstance(response, pb.DiscoveryResponse)
    return response


def names(response: pb.DiscoveryResponse) -> list[str]:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    out = []
    for item in response.resources:
        if item.type_url == CLUSTER:
            out.append(cluster_pb2.Cluster.FromString(item.value).name)
        else:
            out.append(endpoint_pb2.ClusterLoadAssignment.FromString(item.value).cluster_name)
    return out


async def wait_for_status(admin: AdminServer, check: Callable[[dict[str, Any]], bool]
                          ) -> dict[str, Any]:
    """Poll the admin status until `check(first node)` holds (generous timeout, no fixed sleep)."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            status = json.loads(admin.route("/status")[2])
            if status["nodes"] and check(status["nodes"][0]):
                return dict(status)
            await asyncio.sleep(0.02)


async def test_ads_push_on_file_change_and_nack_in_status(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    write(config, [cluster("a"), endpoints("a", 1)])
    async with control_plane(config) as (port, _source, admin), \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = stream(channel, ADS)
        await call.write(pb.DiscoveryRequest(type_url=CLUSTER, node={"id": "n1", "cluster": "c"}))
        first = await read(call)
        assert names(first) == ["a"] and first.nonce
        await call.write(pb.DiscoveryRequest(type_url=CLUSTER, version_info=first.version_info,
                                             response_nonce=first.nonce))
        await call.write(pb.DiscoveryRequest(type_url=CLUSTER_LOAD_ASSIGNMENT,
                                             resource_names=["a"]))
        eds = await read(call)
        assert eds.type_url == CLUSTER_LOAD_ASSIGNMENT and names(eds) == ["a"]

        write(config, [cluster("a"), endpoints("a", 1), cluster("b"), endpoints("b", 2)])
        second = await read(call)
        assert names(second) == ["a", "b"] and second.nonce not in (first.nonce, eds.nonce)
        await call.write(pb.DiscoveryRequest(
            type_url=CLUSTER, version_info=first.version_info, response_nonce=second.nonce,
            error_detail=status_pb2.Status(code=3, message="cluster b refused")))
        [node] = (await wait_for_status(admin, lambda node: node["subscriptions"]["cluster"][
            "last_nack"] is not None))["nodes"]
        assert (node["id"], node["cluster"], node["service"]) == (
            "n1", "c", "AggregatedDiscoveryService")
        nack = node["subscriptions"]["cluster"]["last_nack"]
        assert (nack["version"], nack["message"], nack["superseded"]) == (
            second.version_info, "cluster b refused", None)
        assert abs(nack["at"] - time.time()) < TIMEOUT
        assert node["subscriptions"]["cluster"]["acked_version"] == first.version_info
        assert node["subscriptions"]["endpoint"]["names"] == ["a"]
        assert node["warning"] is None  # no named groups: nothing to match
        assert json.loads(admin.route("/status?node=c")[2])["nodes"][0]["id"] == "n1"
        assert admin.route("/status?node=other")[0] == 404
        metrics = admin.route("/metrics")[2]
        assert 'pointsman_xds_nacks_total{type="cluster"} 1' in metrics
        assert "pointsman_xds_connected_streams 1" in metrics
        assert "pointsman_xds_push_ack_seconds_count 1" in metrics

        # A later version ACKed: the NACK stays on record, marked superseded, with its time.
        write(config, [cluster("a"), endpoints("a", 1), cluster("c"), endpoints("c", 2)])
        third = await read(call)
        await call.write(pb.DiscoveryRequest(type_url=CLUSTER, version_info=third.version_info,
                                             response_nonce=third.nonce))
        [node] = (await wait_for_status(admin, lambda node: node["subscriptions"]["cluster"][
            "last_nack"]["superseded"] is not None))["nodes"]
        nack = node["subscriptions"]["cluster"]["last_nack"]
        assert nack["version"] == second.version_info
        assert nack["superseded"]["acked_version"] == third.version_info
        assert nack["at"] <= nack["superseded"]["at"]
        call.cancel()


async def test_per_type_service_serves_only_its_type(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    write(config, [cluster("a"), endpoints("a", 1)])
    async with control_plane(config) as (port, _source, _admin), \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = stream(channel, CDS)
        await call.write(pb.DiscoveryRequest(node={"id": "n2"}))  # type_url may be omitted
        response = await read(call)
        assert response.type_url == CLUSTER and names(response) == ["a"]
        wrong = stream(channel, CDS)
        await wrong.write(pb.DiscoveryRequest(type_url=CLUSTER_LOAD_ASSIGNMENT))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(wrong.read(), TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        call.cancel()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_mutual_tls_serves_clients_with_a_certificate_only(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    config = tmp_path / "all.yaml"
    write(config, [cluster("a"), endpoints("a", 1)])
    server_credentials = grpc.ssl_server_credentials(
        [(files["server.key"], files["server.pem"])], root_certificates=files["ca.pem"],
        require_client_auth=True)
    async with control_plane(config, server_credentials) as (port, _source, _admin):
        good = grpc.ssl_channel_credentials(files["ca.pem"], files["client.key"],
                                            files["client.pem"])
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", good) as channel:
            call = stream(channel, ADS)
            await call.write(pb.DiscoveryRequest(type_url=CLUSTER, node={"id": "tls"}))
            assert names(await read(call)) == ["a"]
            call.cancel()
        anonymous = grpc.ssl_channel_credentials(files["ca.pem"])
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", anonymous) as channel:
            call = stream(channel, ADS)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.write(pb.DiscoveryRequest(type_url=CLUSTER, node={"id": "anon"}))
                await asyncio.wait_for(call.read(), TIMEOUT)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_fetch_answers_once_with_the_current_resources(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    write(config, [cluster("a"), endpoints("a", 1), cluster("b"), endpoints("b", 2)])
    async with control_plane(config) as (port, _source, _admin), \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        fetch = channel.unary_unary(
            "/envoy.service.endpoint.v3.EndpointDiscoveryService/FetchEndpoints",
            request_serializer=pb.DiscoveryRequest.SerializeToString,
            response_deserializer=pb.DiscoveryResponse.FromString)
        response = await fetch(pb.DiscoveryRequest(resource_names=["b"], node={"id": "f"}),
                               timeout=TIMEOUT)
        assert response.type_url == CLUSTER_LOAD_ASSIGNMENT and names(response) == ["b"]
        empty = await fetch(pb.DiscoveryRequest(resource_names=["zzz"]), timeout=TIMEOUT)
        assert list(empty.resources) == [] and empty.version_info


async def test_node_groups_see_their_own_folder(tmp_path: Path) -> None:
    write(tmp_path / "shared.yaml", [cluster("a"), endpoints("a", 1)])
    (tmp_path / "edge").mkdir()
    write(tmp_path / "edge" / "extra.yaml", [cluster("edge-only"), endpoints("edge-only", 2)])
    async with control_plane(tmp_path) as (port, _source, _admin), \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        edge, other = stream(channel, ADS), stream(channel, ADS)
        await edge.write(pb.DiscoveryRequest(type_url=CLUSTER,
                                             node={"id": "e1", "cluster": "edge"}))
        await other.write(pb.DiscoveryRequest(type_url=CLUSTER,
                                              node={"id": "o1", "cluster": "other"}))
        assert names(await read(edge)) == ["a", "edge-only"]
        assert names(await read(other)) == ["a"]
        edge.cancel()
        other.cancel()


async def test_delta_ads_sends_changes_and_removals(tmp_path: Path) -> None:
    config = tmp_path / "all.yaml"
    write(config, [cluster("a"), endpoints("a", 1), cluster("b"), endpoints("b", 2)])
    async with control_plane(config) as (port, _source, admin), \
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
            request_serializer=pb.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=pb.DeltaDiscoveryResponse.FromString)()
        await call.write(pb.DeltaDiscoveryRequest(type_url=CLUSTER, node={"id": "d1"}))
        first = await asyncio.wait_for(call.read(), TIMEOUT)
        assert sorted(item.name for item in first.resources) == ["a", "b"]
        await call.write(pb.DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=first.nonce))
        write(config, [cluster("a", "2s"), endpoints("a", 1)])
        change = await asyncio.wait_for(call.read(), TIMEOUT)
        assert [item.name for item in change.resources] == ["a"]
        assert list(change.removed_resources) == ["b"]
        status = await wait_for_status(admin, lambda node: True)
        assert status["nodes"][0]["service"] == "AggregatedDiscoveryService(delta)"
        call.cancel()
