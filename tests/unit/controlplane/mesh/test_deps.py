"""Which objects each compiled resource came from (controlplane/mesh/compile/deps.py): read
off what the units read, a cluster also from the routes and policies that chose its settings;
and the answer follows an incremental recompilation."""

from __future__ import annotations

from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.deps import Provenance
from controlplane.mesh.objects import ObjectKey
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.unit.controlplane.mesh.helpers import gateway, mesh_of, sidecar

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
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules: [{backendRefs: [{name: api, port: 8080}]}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: lb}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  loadBalancer: {type: Random}
"""
API, WEB = ObjectKey("Service", "default", "api"), ObjectKey("Service", "default", "web")
ROUTE_KEY = ObjectKey("HTTPRoute", "default", "r")
POLICY = ObjectKey("BackendTrafficPolicy", "default", "lb")


def objects_by_resource(compiler: MeshCompiler) -> dict[tuple[str, str], frozenset[ObjectKey]]:
    out = compiler.compile_node(sidecar("web"))
    provenance = Provenance(compiler.memo)
    return {(type_url, name): provenance.objects_of(resource)
            for type_url, items in out.resources.items() for name, resource in items.items()}


def test_resources_name_the_objects_they_came_from() -> None:
    found = objects_by_resource(MeshCompiler(mesh_of(MESH)))
    assert found[(LISTENER.type_url, "inbound|80")] == {WEB}
    assert found[(ROUTE.type_url, "outbound|80")] == {WEB}
    assert found[(ROUTE.type_url, "outbound|8080")] == {API, ROUTE_KEY, POLICY}
    assert found[(CLUSTER.type_url, "outbound|8080||api.default")] >= {API, POLICY}
    assert found[(ENDPOINT.type_url, "outbound|80||web.default")] == {WEB}


def test_the_answer_follows_a_recompilation() -> None:
    compiler = MeshCompiler(mesh_of(MESH))
    objects_by_resource(compiler)
    compiler.update(mesh=mesh_of(MESH.split("---\napiVersion: gateway.envoyproxy.io")[0]))
    found = objects_by_resource(compiler)
    assert POLICY not in found[(CLUSTER.type_url, "outbound|8080||api.default")]
    assert found[(ROUTE.type_url, "outbound|8080")] == {API, ROUTE_KEY}


def test_a_gateways_resources_name_the_gateway() -> None:
    """A Gateway's unit returns a ResourceSet: its listeners come from the Gateway (so a
    Gateway proxy's NACK concerns it, and its Programmed follows that proxy)."""
    text = MESH + """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pointsman
  listeners: [{name: http, port: 80, protocol: HTTP}]
"""
    compiler = MeshCompiler(mesh_of(text))
    out = compiler.compile_node(gateway("edge"))
    provenance = Provenance(compiler.memo)
    assert ObjectKey("Gateway", "default", "edge") in provenance.objects_of(
        out.resources[LISTENER.type_url]["gateway|80"])
