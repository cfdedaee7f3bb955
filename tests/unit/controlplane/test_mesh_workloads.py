"""Workload registration in the --mesh adapter (MeshCache) and between control-plane replicas
(SharedEndpointsCache): a workload's labels pick its Services from its listener ACK to its
stream's end; a new workload is reachable by its address at once (pods.py)."""

from __future__ import annotations

from pathlib import Path

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from controlplane.api.replicas import WORKLOAD, SharedEndpointsCache
from controlplane.mesh.compile.memo import Workload
from controlplane.protocol.events import Acked, NodeIdentified
from controlplane.resources import LISTENER, ROUTE
from controlplane.sources.mesh import MeshCache, MeshSource
from controlplane.store.presence import LocalPresence
from tests.unit.controlplane.test_mesh_source import endpoints_of

MESH = """
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 8080, appProtocol: http}]
"""


def workload(name: str, ip: str, outbound: str, **labels: str) -> base_pb2.Node:
    message = base_pb2.Node(id=f"{name}-{ip}", cluster=name)
    json_format.ParseDict({"kind": "Workload", "instance_ip": ip, "outbound_ip": outbound,
                           "labels": labels}, message.metadata)
    return message


def _cache(tmp_path: Path, cache: MeshCache) -> MeshCache:
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    assert MeshSource(path, cache).poll()
    return cache


def _pod_hosts(cache: MeshCache, node: base_pb2.Node) -> list[str]:
    table = route_pb2.RouteConfiguration()
    cache.snapshot_for(node).of_type(ROUTE.type_url).resources["outbound|8080"].packed.Unpack(
        table)
    return [vhost.name for vhost in table.virtual_hosts if vhost.name.startswith("pod|")]


def test_a_workload_backs_the_services_its_labels_match_while_connected(tmp_path: Path) -> None:
    cache = _cache(tmp_path, MeshCache())
    client = workload("client", "10.0.0.9", "127.0.0.9", app="client")
    echo = workload("echo-v1", "10.0.0.1", "127.0.0.8", app="echo", version="v1")
    assert endpoints_of(cache.snapshot_for(client), "outbound|8080||echo.default") == []
    assert _pod_hosts(cache, client) == []
    cache.record(3, echo.id, [NodeIdentified(echo)])
    cache.record(3, echo.id, [Acked(LISTENER.type_url, "v1", "n1", 0.01)])
    assert endpoints_of(cache.snapshot_for(client), "outbound|8080||echo.default") == [
        "10.0.0.1"]
    assert _pod_hosts(cache, client) == ["pod|8080|10.0.0.1"]
    assert "inbound|8080" in cache.snapshot_for(echo).of_type(LISTENER.type_url).resources
    cache.stream_closed(3)
    assert endpoints_of(cache.snapshot_for(client), "outbound|8080||echo.default") == []
    assert _pod_hosts(cache, client) == []


def test_replicas_share_their_workloads_through_the_store(tmp_path: Path) -> None:
    cache = _cache(tmp_path, SharedEndpointsCache())
    assert isinstance(cache, SharedEndpointsCache)
    presence = LocalPresence("r1")
    cache.share(presence)
    echo = workload("echo-v1", "10.0.0.1", "127.0.0.8", app="echo")
    cache.record(3, echo.id, [NodeIdentified(echo), Acked(LISTENER.type_url, "v1", "n", 0.0)])
    entries = presence.entries(WORKLOAD)
    assert list(entries) == [("r1", "default/echo-v1/10.0.0.1")]
    assert cache.compiler.endpoints.workloads == {
        "default": (Workload("echo-v1", "10.0.0.1", (("app", "echo"),)),)}
    cache.stream_closed(3)
    assert presence.entries(WORKLOAD) == {}
    assert cache.compiler.endpoints.workloads == {}
