"""The --mesh adapter: compiled snapshots for mesh nodes, raw groups for the others, sidecars
registered as endpoints when their listeners are ACKed and until their stream closes, and a
bad mesh edit that changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from controlplane.cache import Snapshot
from controlplane.protocol.events import Acked, NodeIdentified
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER
from controlplane.sources.mesh import MeshCache, MeshSource

MESH = """
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, appProtocol: http}]}
"""


def node(name: str, node_id: str, ip: str) -> base_pb2.Node:
    message = base_pb2.Node(id=node_id, cluster=name)
    json_format.ParseDict({"instance_ip": ip, "outbound_ip": "127.0.0.9"}, message.metadata)
    return message


def loaded(tmp_path: Path, text: str = MESH) -> tuple[MeshCache, MeshSource, Path]:
    path = tmp_path / "mesh.yaml"
    path.write_text(text)
    cache = MeshCache()
    source = MeshSource(path, cache)
    assert source.poll()
    return cache, source, path


def endpoints_of(snapshot: Snapshot, cluster: str) -> list[str]:
    from envoy.config.endpoint.v3 import endpoint_pb2
    message = endpoint_pb2.ClusterLoadAssignment()
    snapshot.of_type(ENDPOINT.type_url).resources[cluster].packed.Unpack(message)
    return [item.endpoint.address.socket_address.address
            for group in message.endpoints for item in group.lb_endpoints]


def test_mesh_nodes_get_compiled_snapshots_others_the_raw_groups(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    web = cache.snapshot_for(node("web", "web-1", "10.0.0.2"))
    assert "inbound|80" in web.of_type(LISTENER.type_url).resources
    assert "outbound|8080||api.default" in web.of_type(CLUSTER.type_url).resources
    assert cache.snapshot_for(node("web", "web-1", "10.0.0.2")) is web  # memoised
    stranger = cache.snapshot_for(base_pb2.Node(id="x", cluster="unknown"))
    assert stranger is cache.groups[""]


def test_a_sidecar_is_an_endpoint_from_its_listener_ack_to_its_stream_end(
        tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    changes: list[int] = []
    cache.watch(lambda: changes.append(cache.generation))
    web = node("web", "web-1", "10.0.0.2")
    api = node("api", "api-1", "10.0.0.3")
    cache.record(7, "api-1", [NodeIdentified(api)])
    assert endpoints_of(cache.snapshot_for(web), "outbound|8080||api.default") == []
    cache.record(7, "api-1", [Acked(LISTENER.type_url, "v1", "n1", 0.01)])
    assert endpoints_of(cache.snapshot_for(web), "outbound|8080||api.default") == ["10.0.0.3"]
    assert len(changes) == 1
    cache.record(7, "api-1", [Acked(LISTENER.type_url, "v2", "n2", 0.01)])  # again: no change
    assert len(changes) == 1
    cache.stream_closed(7)
    assert endpoints_of(cache.snapshot_for(web), "outbound|8080||api.default") == []
    assert len(changes) == 2


def test_a_node_with_bad_metadata_gets_nothing_and_is_named(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    bad = node("api", "api-9", "10.0.0.3")
    json_format.ParseDict({"instance_ip": "not-an-ip"}, bad.metadata)
    snapshot = cache.snapshot_for(bad)
    assert snapshot.count() == 0
    assert "not an IP address" in cache.node_errors["api-9"]


def test_a_bad_edit_changes_nothing(tmp_path: Path) -> None:
    cache, source, path = loaded(tmp_path)
    before = cache.snapshot_for(node("web", "web-1", "10.0.0.2"))
    path.write_text(MESH.replace("appProtocol: http}]}", "appProtocol: http, x: 1}]}", 1))
    assert not source.poll()
    assert source.last_error is not None
    assert str(source.last_error).startswith(f"{path}:5: Service default/api: spec.ports[0].x")
    assert cache.snapshot_for(node("web", "web-1", "10.0.0.2")) is before
    path.write_text(MESH + MESH.split("---")[0].join(["---", ""]))  # the same Service twice
    assert not source.poll()
    assert "defined twice" in str(source.last_error)


def test_a_new_mesh_is_compiled_before_it_is_swapped_in(tmp_path: Path) -> None:
    """MeshSource prepares the new mesh's units off the event loop (in the poll thread):
    the nodes connected then get their snapshots without building anything on the loop."""
    cache, source, path = loaded(tmp_path)
    web = node("web", "web-1", "10.0.0.2")
    before = cache.snapshot_for(web)
    path.write_text(MESH + """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules: [{matches: [{path: {value: /v2}}], backendRefs: [{name: api, port: 8080}]}]
""")
    assert source.poll()
    built = dict(cache.compiler.memo.built)
    after = cache.snapshot_for(web)
    assert dict(cache.compiler.memo.built) == built  # nothing compiled here
    assert after.of_type("type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
                         ).version != before.of_type(
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration").version


def test_the_command_line_takes_a_mesh(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    from controlplane import main
    with pytest.raises(SystemExit):
        main.parse_args([])  # neither --resources nor --mesh
    assert "--resources PATH, --mesh PATH or both" in capsys.readouterr().err
    path = tmp_path / "mesh.yaml"
    path.write_text(MESH)
    assert main.main(["--mesh", str(path), "--check"]) == 0
    assert capsys.readouterr().out == "mesh: 2 Service\n"
    path.write_text(MESH.replace("port: 80,", "port: 80, bad: 1,"))
    assert main.main(["--mesh", str(path), "--check"]) == 1
    assert "spec.ports[0].bad: unknown field" in capsys.readouterr().err


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    _, source, path = loaded(tmp_path)
    path.write_bytes(b"kind: \xff\n")
    assert not source.poll()
    assert str(source.last_error).startswith(f"{path}: not UTF-8")


def test_node_errors_are_in_the_admin_status(tmp_path: Path) -> None:
    from controlplane.observe import Observer
    cache, _, _ = loaded(tmp_path)
    bad = node("api", "api-9", "10.0.0.3")
    json_format.ParseDict({"kind": "Pod"}, bad.metadata)
    cache.snapshot_for(bad)
    assert Observer(cache).status()["mesh_node_errors"] == {
        "api-9": "node metadata 'kind' must be Service or Gateway, not 'Pod'"}
