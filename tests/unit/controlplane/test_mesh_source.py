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
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, SECRET
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
    # neither --resources nor --mesh: the mesh API over the default file store (issue 12)
    assert main.parse_args([]).store == main.DEFAULT_STORE
    assert main.parse_args(["--mesh", "x"]).store is None
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
        "api-9": "node metadata 'kind' must be Service, Workload or Gateway, not 'Pod'"}


# ---- the compiled views in the shared cache (controlplane/cache/, issue 18) ---------------

ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"


def test_sidecars_views_hold_the_shared_parts_by_reference(tmp_path: Path) -> None:
    """Two sidecars of one namespace: their route tables, endpoint sets and clusters are the
    same content objects (one packing, one encoded chunk); their listeners differ only by
    their own inbound part, laid over the one shared outbound set."""
    cache, _, _ = loaded(tmp_path)
    one = cache.view_for(node("web", "web-1", "10.0.0.2"))
    two = cache.view_for(node("web", "web-2", "10.0.0.4"))
    assert one is not two
    for type_url in (ROUTE_TYPE, ENDPOINT.type_url, CLUSTER.type_url):
        assert one.of_type(type_url) is two.of_type(type_url)
    listeners = one.of_type(LISTENER.type_url), two.of_type(LISTENER.type_url)
    assert listeners[0] is not listeners[1]
    assert listeners[0].shared is listeners[1].shared  # type: ignore[attr-defined]
    assert "inbound|80" in listeners[1].resources


def test_a_node_connecting_changes_no_one_elses_view_and_no_configuration(
        tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    web = node("web", "web-1", "10.0.0.2")
    cache.view_for(web)
    woken: list[str] = []
    loads: list[int] = []
    cache.subscribe(web, lambda: woken.append("web-1"))
    cache.watch(lambda: loads.append(cache.generation))
    cache.view_for(node("api", "api-1", "10.0.0.3"))
    cache.view_for(node("web", "web-2", "10.0.0.4"))
    assert woken == []
    assert loads == []  # a view made for a connecting node is not a config load


def test_registrations_arriving_together_are_compiled_once(tmp_path: Path) -> None:
    """A storm of sidecars registering: the connected views are compiled again once per
    burst (ENDPOINT_BATCH_AFTER / ENDPOINT_BATCH_MAX), not once per sidecar."""
    import asyncio

    cache, _, _ = loaded(tmp_path)
    web = node("web", "web-1", "10.0.0.2")
    cache.view_for(web)
    woken: list[int] = []
    cache.subscribe(web, lambda: woken.append(1))
    compiled: list[object] = []
    compile_node = cache.compiler.compile_node

    def counting(identity):  # type: ignore[no-untyped-def]
        compiled.append(identity)
        return compile_node(identity)
    cache.compiler.compile_node = counting  # type: ignore[method-assign]

    async def storm() -> None:
        for index in range(20):
            api = node("api", f"api-{index}", f"10.0.1.{index}")
            cache.record(index, api.id, [NodeIdentified(api)])
            cache.record(index, api.id, [Acked(LISTENER.type_url, "v1", "n1", 0.01)])
            await asyncio.sleep(0)  # each in a loop turn of its own
        await asyncio.sleep(0.5)
    asyncio.run(storm())
    assert len(compiled) == 1  # web's view, once, for 20 registrations
    assert woken == [1]
    assert len(endpoints_of(cache.view_for(web), "outbound|8080||api.default")) == 20


def test_registrations_coming_steadily_are_flushed_less_often_when_a_flush_is_dear(
        tmp_path: Path) -> None:
    """Registrations spaced just over ENDPOINT_BATCH_AFTER apart: each would be a flush of its
    own; a flush that took `cost` seconds holds the next one for `cooldown * cost`."""
    import asyncio
    import time

    cache, _, _ = loaded(tmp_path)
    cache._batch.cooldown = 40.0
    web = node("web", "web-1", "10.0.0.2")
    cache.view_for(web)
    cache.subscribe(web, lambda: None)
    flushes: list[float] = []
    compile_node = cache.compiler.compile_node

    def dear(identity):  # type: ignore[no-untyped-def]
        flushes.append(time.monotonic())
        time.sleep(0.02)  # a flush of 0.02 s: the next waits 0.8 s
        return compile_node(identity)
    cache.compiler.compile_node = dear  # type: ignore[method-assign]

    async def steady() -> None:
        for index in range(8):
            api = node("api", f"api-{index}", f"10.0.1.{index}")
            cache.record(index, api.id, [NodeIdentified(api)])
            cache.record(index, api.id, [Acked(LISTENER.type_url, "v1", "n1", 0.01)])
            await asyncio.sleep(0.15)
        await asyncio.sleep(1.5)
    asyncio.run(steady())
    assert 2 <= len(flushes) <= 3  # without the cooldown: one per registration (8)
    assert len(endpoints_of(cache.view_for(web), "outbound|8080||api.default")) == 8


def test_a_view_nobody_is_connected_to_is_dropped_at_the_next_change(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    web, gone = node("web", "web-1", "10.0.0.2"), node("web", "web-9", "10.0.0.9")
    cache.view_for(web)
    cancel = cache.subscribe(web, lambda: None)
    cache.view_for(gone)  # asked once (a Fetch, or a stream that closed)
    assert len([key for key in cache.views if key.startswith("mesh:")]) == 2
    api = node("api", "api-1", "10.0.0.3")
    cache.record(1, "api-1", [NodeIdentified(api), Acked(LISTENER.type_url, "v1", "n", 0.0)])
    assert [key for key in cache.views if key.startswith("mesh:")] == [
        "mesh:Service|default|web|web-1|10.0.0.2|127.0.0.1|127.0.0.9"]
    cancel()
    cache.stream_closed(1)
    assert not [key for key in cache.views if key.startswith("mesh:")]
    assert endpoints_of(cache.view_for(web), "outbound|8080||api.default") == []  # compiled again


def test_a_mesh_edit_wakes_only_the_sidecars_whose_view_changed(tmp_path: Path) -> None:
    """Another namespace's Service changing its targetPort changes its own sidecars'
    clusters to their application, not what the other sidecars receive."""
    text = MESH + """---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: data}
spec: {ports: [{name: tcp, port: 5432, targetPort: 5432}]}
"""
    cache, source, path = loaded(tmp_path, text)
    web, db = node("web", "web-1", "10.0.0.2"), node("db", "db-1", "10.0.0.5")
    json_format.ParseDict({"namespace": "data", "instance_ip": "10.0.0.5",
                           "outbound_ip": "127.0.0.9"}, db.metadata)
    woken: list[str] = []
    for member, name in ((web, "web"), (db, "db")):
        cache.view_for(member)
        cache.subscribe(member, lambda name=name: woken.append(name))  # type: ignore[misc]
    before = cache.view_for(web)
    path.write_text(text.replace("targetPort: 5432", "targetPort: 6432"))
    assert source.poll()
    assert woken == ["db"]
    assert cache.view_for(web) is before  # the same object: nothing to send


def test_a_mesh_edit_that_makes_a_node_a_member_moves_it_to_its_compiled_view(
        tmp_path: Path) -> None:
    cache, source, path = loaded(tmp_path)
    newcomer = node("db", "db-1", "10.0.0.5")
    assert cache.view_for(newcomer) is cache.groups[""]  # no Service db yet: not a member
    woken: list[int] = []
    cache.subscribe(newcomer, lambda: woken.append(1))
    path.write_text(MESH + """---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: tcp, port: 5432}]}
""")
    assert source.poll()
    assert woken == [1]
    assert "inbound|5432" in cache.view_for(newcomer).of_type(LISTENER.type_url).resources


def test_a_poll_reads_no_file_whose_status_did_not_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As FileSource: a file last modified well before the scan that hashed it is not read
    again while its status stays the same (a poll of 1,000 files hashed them all)."""
    import hashlib
    import os
    import time

    _, source, path = loaded(tmp_path)
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert source.poll()  # the new mtime: hashed again (same content, a new fingerprint)
    hashed: list[int] = []
    blake2b = hashlib.blake2b

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        hashed.append(1)
        return blake2b(*args, **kwargs)
    monkeypatch.setattr(hashlib, "blake2b", counting)
    assert not source.poll()
    assert hashed == []


def test_with_a_ca_each_member_gets_its_identitys_svid_and_the_bundle(tmp_path: Path) -> None:
    import datetime

    from cryptography import x509
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    from controlplane.ca import CertificateAuthority, IdentitySecrets

    cache, _, _ = loaded(tmp_path)
    now = datetime.datetime.now(datetime.UTC)
    authority = CertificateAuthority.create_root(now, lifetime=datetime.timedelta(hours=2))
    cache.identity_secrets = IdentitySecrets(authority)
    web = node("web", "web-1", "10.0.0.2")
    secrets = cache.view_for(web).of_type(SECRET.type_url).resources
    assert set(secrets) == {"default", "ROOTCA"}
    svid = secret_pb2.Secret()
    secrets["default"].packed.Unpack(svid)
    leaf = x509.load_pem_x509_certificate(svid.tls_certificate.certificate_chain.inline_bytes)
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.UniformResourceIdentifier) == [
            "spiffe://cluster.local/ns/default/sa/web"]
    # Two sidecars of a Service share the identity's set; another Service has its own.
    other = cache.view_for(node("web", "web-2", "10.0.0.4")).of_type(SECRET.type_url)
    assert other.resources["default"] is secrets["default"]
    api = cache.view_for(node("api", "api-1", "10.0.0.3")).of_type(SECRET.type_url)
    assert api.resources["default"].version != secrets["default"].version
    assert api.resources["ROOTCA"].version == secrets["ROOTCA"].version
    # Renewal at half life pushes the new SVID to that identity's sidecars only.
    woken: list[str] = []
    cache.subscribe(web, lambda: woken.append("web"))
    leave_api = cache.subscribe(node("api", "api-1", "10.0.0.3"),
                                lambda: woken.append("api"))
    assert cache.renew_secrets(now + datetime.timedelta(minutes=30)) == []
    assert set(cache.renew_secrets(now + datetime.timedelta(hours=1, seconds=1))) == {
        ("default", "web"), ("default", "api")}
    renewed = cache.view_for(web).of_type(SECRET.type_url).resources["default"]
    assert renewed.version != secrets["default"].version
    assert sorted(woken) == ["api", "web"]
    # An identity whose sidecars all left is forgotten, not renewed forever.
    assert cache.identity_secrets is not None
    leave_api()
    assert cache.renew_secrets(now + datetime.timedelta(hours=1, seconds=2)) == []
    assert cache.identity_secrets.identities() == [("default", "web")]


def test_without_a_ca_no_secrets_are_served(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    web = cache.view_for(node("web", "web-1", "10.0.0.2"))
    assert not web.of_type(SECRET.type_url).resources


def test_with_a_ca_a_sidecar_is_an_endpoint_once_it_has_acked_its_secrets_too(
        tmp_path: Path) -> None:
    """Its inbound listener warms only once it holds its SVID (Envoy's listener warming): an
    endpoint registered at the LDS ACK alone would refuse its first callers."""
    import datetime

    from controlplane.ca import CertificateAuthority, IdentitySecrets

    cache, _, _ = loaded(tmp_path)
    now = datetime.datetime.now(datetime.UTC)
    cache.identity_secrets = IdentitySecrets(
        CertificateAuthority.create_root(now, lifetime=datetime.timedelta(hours=2)))
    web, api = node("web", "web-1", "10.0.0.2"), node("api", "api-1", "10.0.0.3")
    cache.view_for(web)
    cache.view_for(api)
    cache.record(1, api.id, [NodeIdentified(api), Acked(LISTENER.type_url, "v1", "n1", 0.0)])
    assert endpoints_of(cache.view_for(web), "outbound|8080||api.default") == []
    cache.record(1, api.id, [Acked(SECRET.type_url, "v1", "n2", 0.0)])
    assert endpoints_of(cache.view_for(web), "outbound|8080||api.default") == ["10.0.0.3"]
    # The other order (Envoy fetches a cluster's secrets before its listeners) is the same.
    cache.record(2, "api-2", [NodeIdentified(node("api", "api-2", "10.0.0.4")),
                              Acked(SECRET.type_url, "v1", "n1", 0.0)])
    assert len(endpoints_of(cache.view_for(web), "outbound|8080||api.default")) == 1
    cache.record(2, "api-2", [Acked(LISTENER.type_url, "v1", "n2", 0.0)])
    assert len(endpoints_of(cache.view_for(web), "outbound|8080||api.default")) == 2
