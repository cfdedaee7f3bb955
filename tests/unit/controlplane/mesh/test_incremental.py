"""Incremental compilation: a change rebuilds what read it and nothing else; unchanged
resources stay the very same packed objects (so nothing is re-serialised or re-sent)."""

from __future__ import annotations

from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.memo import Endpoints
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.unit.controlplane.mesh.helpers import SERVICES, mesh_of, route, sidecar

MANY = SERVICES + "".join(f"""---
apiVersion: v1
kind: Service
metadata: {{name: svc{index}, namespace: ns{index % 3}}}
spec: {{ports: [{{name: http, port: 8080, appProtocol: http}}]}}
""" for index in range(30))
CANARY = route("""
rules:
- matches: [{path: {value: /v2}}]
  backendRefs: [{name: api-v2, port: 8080}]
- backendRefs: [{name: api-v1, port: 8080}]
""")
NODES = [sidecar("web"), sidecar("svc1", "ns1"), sidecar("svc2", "ns2")]


def compile_all(compiler: MeshCompiler) -> list[dict[str, dict[str, object]]]:
    return [compiler.compile_node(node).resources for node in NODES]


def rebuilt(compiler: MeshCompiler, before: dict[str, int]) -> dict[str, int]:
    return {kind: count - before.get(kind, 0) for kind, count in compiler.memo.built.items()
            if count != before.get(kind, 0)}


def test_changing_one_route_rebuilds_one_virtual_host_per_view_and_the_route_tables() -> None:
    compiler = MeshCompiler(mesh_of(MANY + CANARY))
    first = compile_all(compiler)
    before = dict(compiler.memo.built)
    compiler.update(mesh_of(MANY + CANARY.replace("/v2", "/v3")))
    second = compile_all(compiler)
    # One virtual host per caller view of `api` (callers in its namespace, and elsewhere),
    # the port's route table per caller namespace and the set a namespace's sidecars share;
    # no cluster, endpoints or listener.
    assert rebuilt(compiler, before) == {"vhost": 2, "outbound": 3, "namespace": 3}
    for old, new in zip(first, second, strict=True):
        for type_url in (CLUSTER.type_url, ENDPOINT.type_url, LISTENER.type_url):
            assert all(new[type_url][name] is resource
                       for name, resource in old[type_url].items())
        assert new[ROUTE.type_url]["outbound|8080"] is not old[ROUTE.type_url]["outbound|8080"]


def test_reloading_the_same_objects_rebuilds_nothing() -> None:
    compiler = MeshCompiler(mesh_of(MANY + CANARY))
    first = compile_all(compiler)
    before = dict(compiler.memo.built)
    compiler.update(mesh_of(MANY + CANARY))  # new objects, same content
    second = compile_all(compiler)
    assert rebuilt(compiler, before) == {}
    assert all(second[index][ROUTE.type_url]["outbound|8080"]
               is first[index][ROUTE.type_url]["outbound|8080"] for index in range(3))


def test_a_new_endpoint_rebuilds_that_services_endpoints_only() -> None:
    compiler = MeshCompiler(mesh_of(MANY))
    compile_all(compiler)
    before = dict(compiler.memo.built)
    endpoints = Endpoints()
    endpoints.by_service = {("ns1", "svc4"): ("10.0.0.9",)}
    generation = compiler.memo.generation
    marked = compiler.memo.invalidate([("sidecars", "ns1", "svc4")])
    assert marked == 4  # the endpoint set and the 3 namespaces' shared parts, nothing else
    compiler.update(endpoints=endpoints)
    assert compiler.memo.generation == generation  # no unit is re-checked for it
    compile_all(compiler)
    assert rebuilt(compiler, before) == {"endpoints": 1, "namespace": 3}


def test_a_new_service_is_added_without_rebuilding_the_others() -> None:
    compiler = MeshCompiler(mesh_of(MANY))
    compile_all(compiler)
    before = dict(compiler.memo.built)
    compiler.update(mesh_of(MANY + """---
apiVersion: v1
kind: Service
metadata: {name: fresh}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
"""))
    compile_all(compiler)
    assert rebuilt(compiler, before) == {"vhost": 2, "outbound": 3, "cluster": 1,
                                         "endpoints": 1, "namespace": 3}
