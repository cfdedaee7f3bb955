"""Workloads with labels, Services with a selector (Kubernetes membership), named targetPorts
and Namespace objects: controlplane/mesh/compile/workload.py, clusters.py, node.py,
kinds/service.py and kinds/namespace.py."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from controlplane.mesh import MeshError, load_objects
from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.memo import Endpoints, Workload
from controlplane.mesh.compile.node import MeshNode, NodeError, node_identity
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, mesh_of

NS = "gateway-conformance-mesh"
SERVICES = f"""\
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}, labels: {{gateway-conformance: mesh}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: {NS}}}
spec:
  selector: {{app: echo}}
  ports:
  - {{name: http, port: 80, appProtocol: http, targetPort: 8080}}
  - {{name: grpc, port: 7070, appProtocol: kubernetes.io/h2c}}
  - {{name: named, port: 81, appProtocol: http, targetPort: web}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo-v1, namespace: {NS}}}
spec:
  selector: {{app: echo, version: v1}}
  ports:
  - {{name: http, port: 80, appProtocol: http, targetPort: 8080}}
  - {{name: grpc, port: 7070}}
"""
V1 = Workload("echo-v1", "10.0.0.1", (("app", "echo"), ("version", "v1")), (("web", 9000),))
V2 = Workload("echo-v2", "10.0.0.2", (("app", "echo"), ("version", "v2")))
OTHER = Workload("other", "10.0.0.3", (("app", "other"),))


def _endpoints(*workloads: Workload) -> Endpoints:
    endpoints = Endpoints()
    endpoints.workloads = {NS: tuple(sorted(workloads))}
    return endpoints


def _client() -> MeshNode:
    return MeshNode("client", "Workload", "client", NS, "10.0.0.9", "127.0.0.1", "127.0.0.2",
                    labels=(("app", "client"),))


def _addresses(resources, cluster: str) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    body = as_dict(resources, ENDPOINT.type_url, cluster)
    return [(item["endpoint"]["address"]["socket_address"]["address"],
             item["endpoint"]["address"]["socket_address"]["port_value"])
            for group in body.get("endpoints", []) for item in group["lb_endpoints"]]


def test_a_selector_picks_matching_workloads_and_one_workload_backs_several_services() -> None:
    resources = compiled(mesh_of(SERVICES), _client(), _endpoints(V1, V2, OTHER))
    assert _addresses(resources, f"outbound|80||echo.{NS}") == [
        ("10.0.0.1", 8080), ("10.0.0.2", 8080)]
    assert _addresses(resources, f"outbound|80||echo-v1.{NS}") == [("10.0.0.1", 8080)]
    # the port number is the targetPort (defaulting to the port), as a pod's container port
    assert _addresses(resources, f"outbound|7070||echo.{NS}") == [
        ("10.0.0.1", 7070), ("10.0.0.2", 7070)]


def test_a_named_target_port_is_looked_up_in_each_workloads_ports() -> None:
    resources = compiled(mesh_of(SERVICES), _client(), _endpoints(V1, V2))
    # echo-v2 declares no port named "web": left out, as Kubernetes leaves the pod out
    assert _addresses(resources, f"outbound|81||echo.{NS}") == [("10.0.0.1", 9000)]


def test_a_workload_serves_the_target_ports_of_the_services_selecting_it() -> None:
    node = MeshNode("v1", "Workload", "echo-v1", NS, "10.0.0.1", "127.0.0.5", "127.0.0.6",
                    labels=V1.labels, ports=V1.ports)
    resources = MeshCompiler(mesh_of(SERVICES), _endpoints(V1)).compile_node(node)
    inbound = sorted(name for name in resources.names(LISTENER.type_url)
                     if name.startswith("inbound|"))
    assert inbound == ["inbound|7070", "inbound|8080", "inbound|9000"]
    grpc = as_dict(resources, LISTENER.type_url, "inbound|7070")
    assert grpc["address"]["socket_address"] == {"address": "10.0.0.1", "port_value": 7070}
    # echo says h2c on 7070, echo-v1 nothing (tcp): the HTTP-family protocol wins
    chain = grpc["filter_chains"][0]["filters"][0]
    assert chain["name"] == "envoy.filters.network.http_connection_manager"


def test_a_workload_no_service_selects_still_calls_out() -> None:
    resources = compiled(mesh_of(SERVICES), _client(), _endpoints(V1))
    names = resources.names(LISTENER.type_url)
    assert "outbound|80" in names and not any(name.startswith("inbound|") for name in names)


def test_services_without_a_selector_keep_registration_membership() -> None:
    text = SERVICES + "---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: " \
        + NS + "}\nspec: {ports: [{name: http, port: 8080}]}\n"
    endpoints = _endpoints(V1)
    endpoints.by_service = {(NS, "api"): ("10.0.0.7",)}
    resources = compiled(mesh_of(text), _client(), endpoints)
    assert _addresses(resources, f"outbound|8080||api.{NS}") == [("10.0.0.7", 8080)]


def test_new_workloads_recompile_the_endpoints_that_select_them() -> None:
    compiler = MeshCompiler(mesh_of(SERVICES), _endpoints(V1))
    before = compiler.compile_node(_client())
    assert _addresses(before, f"outbound|80||echo.{NS}") == [("10.0.0.1", 8080)]
    compiler.update(endpoints=_endpoints(V1, V2))
    after = compiler.compile_node(_client())
    assert _addresses(after, f"outbound|80||echo.{NS}") == [("10.0.0.1", 8080),
                                                           ("10.0.0.2", 8080)]


def _node(**metadata: object) -> base_pb2.Node:
    message = base_pb2.Node(id="n1", cluster="echo-v1")
    json_format.ParseDict(metadata, message.metadata)
    return message


def test_workload_node_identity() -> None:
    mesh = mesh_of(SERVICES)
    found = node_identity(_node(kind="Workload", namespace=NS, instance_ip="10.0.0.1",
                                labels={"app": "echo"}, ports={"web": 9000}), mesh)
    assert found is not None and (found.kind, found.labels, found.ports) == (
        "Workload", (("app", "echo"),), (("web", 9000),))
    with pytest.raises(NodeError, match="instance_ip"):
        node_identity(_node(kind="Workload", namespace=NS), mesh)
    with pytest.raises(NodeError, match="'ports'"):
        node_identity(_node(kind="Workload", instance_ip="10.0.0.1", ports={"web": 0}), mesh)
    with pytest.raises(NodeError, match="'labels'"):
        node_identity(_node(kind="Workload", instance_ip="10.0.0.1", labels={"a": 1}), mesh)


def test_service_selector_and_named_target_port_parse() -> None:
    service = load_objects(SERVICES)[1]
    assert service.spec.selector == (("app", "echo"),)
    assert service.spec.port(81).target_port_name == "web"
    assert service.spec.selects({"app": "echo", "version": "v9"})
    assert not service.spec.selects({"app": "other"})


def test_a_named_target_port_needs_a_selector() -> None:
    with pytest.raises(MeshError, match=r"spec\.ports\[0\]\.targetPort.*needs a selector"):
        load_objects("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                     "spec: {ports: [{name: http, port: 80, targetPort: web}]}\n")
    with pytest.raises(MeshError, match=r"targetPort"):
        load_objects("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                     "spec: {selector: {a: b}, ports: [{port: 80, targetPort: Web_1}]}\n")


def test_namespace_objects_load_with_labels() -> None:
    namespace = load_objects(SERVICES)[0]
    assert (namespace.kind, namespace.name, dict(namespace.meta.labels)) == (
        "Namespace", NS, {"gateway-conformance": "mesh"})
    with pytest.raises(MeshError, match=r"spec\.phase"):
        load_objects("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n"
                     "spec: {phase: Active}\n")


def test_a_workload_is_reached_by_its_own_address_with_no_service_route() -> None:
    route = f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: {NS}}}
spec:
  parentRefs: [{{group: "", kind: Service, name: echo}}]
  rules:
  - filters:
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: X-Header-Set, value: set}}]}}
    backendRefs: [{{name: echo, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: alt, namespace: {NS}}}
spec: {{selector: {{app: alt}}, ports: [{{name: http, port: 8080, appProtocol: http}}]}}
"""  # alt makes 8080 a Service port number: an outbound listener to send pod traffic through
    resources = compiled(mesh_of(SERVICES + route), _client(), _endpoints(V1, V2, OTHER))
    table = as_dict(resources, ROUTE.type_url, "outbound|8080")
    pods = {vhost["name"]: vhost for vhost in table["virtual_hosts"]
            if vhost["name"].startswith("pod|")}
    # echo-v1 and echo-v2 serve 8080 (echo's and their own Service's targetPort); OTHER nothing
    assert sorted(pods) == ["pod|8080|10.0.0.1", "pod|8080|10.0.0.2"]
    vhost = pods["pod|8080|10.0.0.2"]
    assert vhost["domains"] == ["10.0.0.2"]
    assert vhost["routes"] == [{"match": {"prefix": "/"},
                                "route": {"cluster": "pod|8080|10.0.0.2", "timeout": "0s"}}]
    cluster = as_dict(resources, CLUSTER.type_url, "pod|8080|10.0.0.2")
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"] == {"address": "10.0.0.2", "port_value": 8080}
    # the Service's own virtual host keeps its route; the pod's has none of it
    assert "response_headers_to_add" not in str(vhost)


def test_a_workload_whose_app_would_share_its_outbound_listeners_address_is_refused() -> None:
    node = MeshNode("v1", "Workload", "echo-v1", NS, "10.0.0.1", "127.0.0.5", "127.0.0.5",
                    labels=V1.labels)
    text = SERVICES + "---\napiVersion: v1\nkind: Service\nmetadata: {name: alt, namespace: " \
        + NS + "}\nspec: {ports: [{name: http, port: 8080}]}\n"
    # 7070 (echo's grpc port, its own target) and 8080 (alt's port, echo's http target)
    with pytest.raises(NodeError, match=r"port\(s\) \[7070, 8080\]"):
        MeshCompiler(mesh_of(text), _endpoints(V1)).compile_node(node)
    apart = MeshNode("v1", "Workload", "echo-v1", NS, "10.0.0.1", "127.0.0.5", "127.0.0.6",
                     labels=V1.labels)
    MeshCompiler(mesh_of(text), _endpoints(V1)).compile_node(apart)


def test_an_empty_selector_is_no_selector() -> None:
    [service] = load_objects("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                             "spec: {selector: {}, ports: [{port: 80}]}\n")
    assert service.spec.selector is None and not service.spec.selects({"app": "a"})


def test_with_mesh_identities_workloads_serve_mtls_and_callers_accept_their_identities() -> None:
    """Automatic mTLS to a Service with a selector: a workload holds the SVID of its own name
    (`pointsman sidecar --workload NAME`), so a caller accepts the SPIFFE IDs of the workloads
    the Service selects (istiod lists the service accounts of a Service's pods); the workload's
    inbound port terminates mTLS as the Service port's PeerAuthentication mode says
    (PERMISSIVE by default: a TLS chain and a plaintext one)."""
    from controlplane.mesh.identity import MeshIdentity

    identity = MeshIdentity("cluster.local")
    caller = MeshCompiler(mesh_of(SERVICES), _endpoints(V1, V2), identity=identity
                          ).compile_node(_client())
    socket = as_dict(caller, CLUSTER.type_url, f"outbound|80||echo-v1.{NS}"
                     )["transport_socket_matches"][0]["transport_socket"]
    validation = socket["typed_config"]["common_tls_context"]["combined_validation_context"]
    accepted = [item["matcher"]["exact"] for item in
                validation["default_validation_context"]["match_typed_subject_alt_names"]]
    assert accepted == [f"spiffe://cluster.local/ns/{NS}/sa/echo-v1"]
    socket = as_dict(caller, CLUSTER.type_url, f"outbound|80||echo.{NS}"
                     )["transport_socket_matches"][0]["transport_socket"]
    validation = socket["typed_config"]["common_tls_context"]["combined_validation_context"]
    assert [item["matcher"]["exact"] for item in
            validation["default_validation_context"]["match_typed_subject_alt_names"]] == [
        f"spiffe://cluster.local/ns/{NS}/sa/{name}" for name in ("echo", "echo-v1", "echo-v2")]
    node = MeshNode("v1", "Workload", "echo-v1", NS, "10.0.0.1", "127.0.0.5", "127.0.0.6",
                    labels=V1.labels, ports=V1.ports)
    served = MeshCompiler(mesh_of(SERVICES), _endpoints(V1), identity=identity
                          ).compile_node(node)
    chains = as_dict(served, LISTENER.type_url, "inbound|8080")["filter_chains"]
    assert sorted(chain["filter_chain_match"]["transport_protocol"] for chain in chains) == [
        "raw_buffer", "tls"]
