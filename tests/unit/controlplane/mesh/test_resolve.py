"""Whole-set meaning: attachment, references, conditions with Gateway API's reasons."""

from __future__ import annotations

from controlplane.mesh import load_objects, resolve, status, validate
from controlplane.mesh.objects import ObjectKey
from tests.unit.controlplane.mesh.helpers import SERVICES, mesh_of, route


def conditions(text: str, kind: str, name: str, namespace: str = "default") -> dict[str, str]:
    mesh = mesh_of(text)
    return {item.type: item.reason
            for item in mesh.conditions[ObjectKey(kind, namespace, name)]}


def test_an_accepted_route_with_resolved_backends() -> None:
    text = SERVICES + route("rules: [{backendRefs: [{name: api-v1, port: 8080}]}]")
    assert conditions(text, "HTTPRoute", "r") == {"Accepted": "Accepted",
                                                  "ResolvedRefs": "ResolvedRefs"}


def test_backend_reasons() -> None:
    cases = {
        "{name: ghost, port: 8080}": "BackendNotFound",
        "{name: api-v1, port: 9999}": "BackendNotFound",
        "{group: example.com, kind: Thing, name: x}": "InvalidKind",
    }
    for ref, reason in cases.items():
        text = SERVICES + route(f"rules: [{{backendRefs: [{ref}]}}]")
        assert conditions(text, "HTTPRoute", "r")["ResolvedRefs"] == reason, ref


def test_app_protocol_that_does_not_fit_is_unsupported_protocol() -> None:
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}]}
""" + route("rules: [{backendRefs: [{name: db, port: 5432}]}]")
    assert conditions(text, "HTTPRoute", "r")["ResolvedRefs"] == "UnsupportedProtocol"
    grpc_on_http = SERVICES.replace("kind: HTTPRoute", "") + """---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
"""
    assert conditions(grpc_on_http, "GRPCRoute", "g")["Accepted"] == "NoMatchingParent"


def test_cross_namespace_backends_need_a_grant_at_the_edge_only() -> None:
    edge = SERVICES + """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: pointsman
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: front, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  rules: [{backendRefs: [{name: web, namespace: default, port: 80}]}]
"""
    assert conditions(edge, "HTTPRoute", "front", "infra")["ResolvedRefs"] == "RefNotPermitted"
    granted = edge + """---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-infra, namespace: default}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: "", kind: Service, name: web}]
"""
    assert conditions(granted, "HTTPRoute", "front", "infra")["ResolvedRefs"] == "ResolvedRefs"
    consumer = SERVICES + route("rules: [{backendRefs: [{name: api-v1, namespace: default, "
                                "port: 8080}]}]", namespace="clients",
                                parent='{group: "", kind: Service, name: api, '
                                       'namespace: default, port: 8080}')
    assert conditions(consumer, "HTTPRoute", "r", "clients") == {
        "Accepted": "Accepted", "ResolvedRefs": "ResolvedRefs"}


GATEWAY = SERVICES + """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pointsman
  listeners:
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
  - {name: tcp, port: 9000, protocol: TCP}
"""


def test_gateway_attachment_reasons() -> None:
    mismatch = GATEWAY + route("hostnames: [bar.example.com]\nrules: [{backendRefs: "
                               "[{name: web, port: 80}]}]", parent="{name: edge}")
    assert conditions(mismatch, "HTTPRoute", "r")["Accepted"] == "NoMatchingListenerHostname"
    kind = GATEWAY + route("rules: [{backendRefs: [{name: web, port: 80}]}]",
                           parent="{name: edge, sectionName: tcp}")
    assert conditions(kind, "HTTPRoute", "r")["Accepted"] == "NotAllowedByListeners"
    missing = GATEWAY + route("rules: []", parent="{name: nowhere}")
    assert conditions(missing, "HTTPRoute", "r")["Accepted"] == "NoMatchingParent"
    namespace = GATEWAY + route("rules: []", parent="{name: edge, namespace: default}",
                                namespace="other")
    assert conditions(namespace, "HTTPRoute", "r", "other")["Accepted"] == \
        "NotAllowedByListeners"


def test_conflicted_listeners_are_not_served() -> None:
    text = GATEWAY.replace("  - {name: tcp, port: 9000, protocol: TCP}",
                           "  - {name: tcp, port: 80, protocol: TCP}")
    mesh = mesh_of(text)
    gateway = ObjectKey("Gateway", "default", "edge")
    reasons = {item.type: item.reason for item in mesh.listener_conditions[(gateway, "foo")]}
    assert reasons["Conflicted"] == "ProtocolConflict"
    [accepted] = mesh.conditions[gateway]
    assert (accepted.status, accepted.reason) == ("False", "ListenersNotValid")


def test_policy_targets_and_conflicts() -> None:
    policy = """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}, creationTimestamp: "{created}"}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {target}}}]
  loadBalancer: {{type: Random}}
"""
    text = SERVICES + policy.format(name="old", created="2024-01-01T00:00:00Z", target="api") \
        + policy.format(name="new", created="2024-02-01T00:00:00Z", target="api") \
        + policy.format(name="lost", created="2024-02-01T00:00:00Z", target="nothing")
    mesh = mesh_of(text)
    reasons = {key.name: mesh.conditions[key][0].reason for key in mesh.conditions
               if key.kind == "BackendTrafficPolicy"}
    assert reasons == {"old": "Accepted", "new": "Conflicted", "lost": "TargetNotFound"}


def test_validate_refuses_a_set_with_the_same_object_twice() -> None:
    objects = load_objects(SERVICES + SERVICES.split("---\n")[1].join(["---\n", ""]), "m.yaml")
    [problem] = validate(objects)
    assert problem.reason == "Duplicate"
    assert problem.location.line > 0 and "defined twice" in problem.message


def test_status_renders_conditions_with_observed_generation() -> None:
    text = SERVICES + route("rules: [{backendRefs: [{name: ghost, port: 8080}]}]").replace(
        "{name: r, namespace: default}", "{name: r, namespace: default, generation: 7}")
    objects = load_objects(text, "m.yaml")
    mesh = resolve(objects)
    rendered = status(mesh, next(obj for obj in objects if obj.kind == "HTTPRoute"))
    assert rendered["conditions"] == [
        {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
         "observedGeneration": 7},
        {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
         "message": "Service default/ghost does not exist", "observedGeneration": 7}]
    assert rendered["parents"][0]["conditions"][0]["reason"] == "Accepted"


def test_two_services_with_one_cluster_ip_are_refused() -> None:
    text = SERVICES.replace("metadata: {name: api}\nspec: {",
                            "metadata: {name: api}\nspec: {clusterIP: 10.96.0.7, ").replace(
        "metadata: {name: web}\nspec: {", "metadata: {name: web}\nspec: {clusterIP: 10.96.0.7, ")
    [problem] = validate(load_objects(text, "m.yaml"))
    assert problem.location.field == "spec.clusterIP" and "10.96.0.7" in problem.message


def _gateway_status(text: str, name: str = "edge") -> dict[str, object]:
    mesh = mesh_of(text)
    return status(mesh, mesh.objects[ObjectKey("Gateway", "default", name)])


def test_listener_status_has_supported_kinds_and_programmed() -> None:
    """ListenerStatus (gateway_types.go): supportedKinds are the allowed kinds the protocol
    serves; Programmed follows Accepted and ResolvedRefs."""
    listeners = _gateway_status(GATEWAY)["listeners"]
    assert isinstance(listeners, list)
    by_name = {item["name"]: item for item in listeners}
    assert [kind["kind"] for kind in by_name["foo"]["supportedKinds"]] == [
        "HTTPRoute", "GRPCRoute"]
    assert [kind["kind"] for kind in by_name["tcp"]["supportedKinds"]] == ["TCPRoute"]
    programmed = {item["type"]: item for item in by_name["foo"]["conditions"]}["Programmed"]
    assert (programmed["status"], programmed["reason"]) == ("True", "Programmed")


def test_an_unservable_allowed_kind_is_invalid_route_kinds() -> None:
    """ResolvedRefs=False/InvalidRouteKinds (ListenerReasonInvalidRouteKinds); the kinds that
    can be served stay in supportedKinds, and the listener serves them (Programmed)."""
    text = GATEWAY.replace(
        "  - {name: tcp, port: 9000, protocol: TCP}",
        "  - {name: mixed, port: 81, protocol: HTTP, allowedRoutes: {kinds: "
        "[{kind: InvalidRoute}, {kind: HTTPRoute}]}}")
    listeners = _gateway_status(text)["listeners"]
    assert isinstance(listeners, list)
    mixed = next(item for item in listeners if item["name"] == "mixed")
    assert [kind["kind"] for kind in mixed["supportedKinds"]] == ["HTTPRoute"]
    by_type = {item["type"]: item for item in mixed["conditions"]}
    assert (by_type["ResolvedRefs"]["status"], by_type["ResolvedRefs"]["reason"]) == (
        "False", "InvalidRouteKinds")
    assert by_type["Programmed"]["status"] == "True"


def test_routes_attach_to_a_listener_whose_refs_do_not_resolve() -> None:
    """GatewayWithAttachedRoutes: attachedRoutes counts a route on an Accepted HTTPS listener
    whose certificate is missing; the listener is not Programmed (not served)."""
    text = SERVICES + """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pointsman
  listeners:
  - name: tls
    port: 443
    protocol: HTTPS
    tls: {mode: Terminate, certificateRefs: [{kind: Secret, name: does-not-exist}]}
""" + route("rules: [{backendRefs: [{name: web, port: 80}]}]",
            parent="{name: edge, sectionName: tls}")
    mesh = mesh_of(text)
    [listener] = status(mesh, mesh.objects[ObjectKey("Gateway", "default", "edge")])[
        "listeners"]  # type: ignore[misc]
    assert listener["attachedRoutes"] == 1
    by_type = {item["type"]: item["status"] for item in listener["conditions"]}
    assert by_type["ResolvedRefs"] == "False" and by_type["Programmed"] == "False"


def test_route_parent_status_names_the_parent_ref_and_resolved_refs() -> None:
    """RouteParentStatus: parentRef as written with group, kind and namespace defaulted
    (sectionName, port when set), and per parent Accepted and ResolvedRefs."""
    text = GATEWAY + route("rules: [{backendRefs: [{name: ghost, port: 80}]}]",
                           parent="{name: edge, sectionName: foo}")
    mesh = mesh_of(text)
    [parent] = status(mesh, mesh.objects[ObjectKey("HTTPRoute", "default", "r")])[
        "parents"]  # type: ignore[misc]
    assert parent["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": "edge", "namespace": "default", "sectionName": "foo"}
    assert {item["type"]: item["reason"] for item in parent["conditions"]} == {
        "Accepted": "Accepted", "ResolvedRefs": "BackendNotFound"}
