"""ListenerSets (GEP-1713) on the conformance suite's manifests: admitted by the Gateway's
allowedListeners or NotAllowed; their listeners served by the Gateway's proxy; precedence in
conflicts (the Gateway's listeners, then the older set); routes attached through a
ListenerSet parentRef only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controlplane.mesh import load_objects, read_objects, resolve, status
from controlplane.mesh.resolve import Mesh
from controlplane.resources import LISTENER, ROUTE
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, gateway
from tests.unit.controlplane.mesh.test_backend_tls import FRONTEND

CONFORMANCE = Path(__file__).parents[4] / "tests/conformance/gateway_api/upstream/conformance"
NS = "gateway-conformance-infra"


def mesh_for(manifest: str, extra: str = "") -> Mesh:
    objects, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    return resolve(objects + load_objects((CONFORMANCE / "tests" / manifest).read_text()
                                          + extra))


def status_of(mesh: Mesh, kind: str, name: str, namespace: str = NS) -> dict[str, Any]:
    found = mesh.get(kind, namespace, name)
    assert found is not None, name
    return status(mesh, found)


def conditions(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {item["type"]: (item["status"], item["reason"]) for item in items}


def listeners(out: dict[str, Any]) -> dict[str, dict[str, tuple[str, str]]]:
    return {item["name"]: conditions(item["conditions"]) for item in out["listeners"]}


def test_listener_sets_are_served_by_their_gateway() -> None:
    mesh = mesh_for("listenerset-http-routing.yaml")
    out = status_of(mesh, "Gateway", "gateway-with-listener-sets-http-routing")
    assert out["attachedListenerSets"] == 2
    assert [item["name"] for item in out["listeners"]] == ["gateway-listener-1",
                                                           "gateway-listener-2"]
    one = status_of(mesh, "ListenerSet", "listener-set-http-routing-1")
    assert conditions(one["conditions"])["Accepted"] == ("True", "Accepted")
    entry = one["listeners"][0]
    assert entry["name"] == "listener-set-http-routing-1-listener-1"
    assert conditions(entry["conditions"])["Programmed"] == ("True", "Programmed")
    # as the suite counts them (listenerset-http-routing.go): gateway-route is not among them
    assert [item["attachedRoutes"] for item in one["listeners"]] == [3, 2]
    table = as_dict(compiled(mesh, gateway("gateway-with-listener-sets-http-routing", NS)),
                    ROUTE.type_url, "gateway|80")
    domains = {domain for host in table["virtual_hosts"] for domain in host["domains"]}
    assert {"gateway-listener-1.com", "listener-set-http-routing-1-listener-1.com",
            "listener-set-http-routing-2-listener-2.com"} <= domains
    route = status_of(mesh, "HTTPRoute", "attaches-to-all-listeners")
    assert [(item["parentRef"]["kind"], item["conditions"][0]["status"])
            for item in route["parents"]] == [("Gateway", "True"), ("ListenerSet", "True"),
                                               ("ListenerSet", "True")]


def test_a_gateway_route_does_not_reach_listener_set_listeners() -> None:
    mesh = mesh_for("listenerset-http-routing.yaml")
    table = as_dict(compiled(mesh, gateway("gateway-with-listener-sets-http-routing", NS)),
                    ROUTE.type_url, "gateway|80")
    for host in table["virtual_hosts"]:
        paths = [item["match"].get("path_separated_prefix") for item in host["routes"]]
        if any(domain.startswith("listener-set") for domain in host["domains"]):
            assert "/gateway-route" not in paths, host["domains"]


def test_a_gateway_admits_no_listener_set_by_default() -> None:
    for manifest, name in (("listenerset-default-not-allowed.yaml",
                            "listenerset-default-not-allowed"),
                           ("listenerset-allowed-namespace-none.yaml",
                            "listenerset-not-allowed")):
        mesh = mesh_for(manifest)
        out = status_of(mesh, "ListenerSet", name)
        assert conditions(out["conditions"])["Accepted"] == ("False", "NotAllowed"), manifest
        assert out["listeners"] == []


def test_the_gateway_and_older_sets_win_conflicts() -> None:
    for what in ("hostname", "protocol"):
        mesh = mesh_for(f"listenerset-{what}-conflict.yaml")
        reason = f"{what.capitalize()}Conflict"
        gateway_out = status_of(mesh, "Gateway", f"gateway-with-listenerset-{what}-conflict")
        assert gateway_out["attachedListenerSets"] == 2  # the Accepted sets
        for name, found in listeners(gateway_out).items():
            assert found["Accepted"] == ("True", "Accepted"), (what, name)
        first = listeners(status_of(mesh, "ListenerSet",
                                    f"listenerset-with-{what}-conflict-with-gateway-1"))
        assert first["listener-set-1-listener"]["Programmed"] == ("True", "Programmed")
        assert first[f"{what}-conflict-with-gateway-listener"]["Conflicted"] == ("True", reason)
        assert first[f"{what}-conflict-with-gateway-listener"]["Accepted"] == ("False", reason)
        second = status_of(mesh, "ListenerSet", f"listenerset-with-{what}-conflict-with-gateway-2")
        assert conditions(second["conditions"])["Accepted"] == ("False", "ListenersNotValid")
        later = listeners(status_of(mesh, "ListenerSet",
                                    f"listenerset-with-{what}-conflict-with-listener-set-2"))
        assert later[f"{what}-conflict-with-listener-set-listener"]["Conflicted"] == (
            "True", reason)


def test_each_parent_ref_is_evaluated_on_its_own() -> None:
    """ListenerSetDualParentRefIndependence, ListenerSetRouteStatusScopedToParentRef."""
    mesh = mesh_for("listenerset-dual-parentref-independence.yaml")
    out = status_of(mesh, "ListenerSet", "ls-dual-parentref")
    assert [item["attachedRoutes"] for item in out["listeners"]] == [2]
    one = status_of(mesh, "HTTPRoute", "route-dual-parentref-one")
    assert [(item["parentRef"]["kind"], item["conditions"][0]["status"],
             item["conditions"][0]["reason"]) for item in one["parents"]] == [
        ("Gateway", "False", "NoMatchingParent"), ("ListenerSet", "True", "Accepted")]
    mesh = mesh_for("listenerset-route-status-scoped-to-parentref.yaml")
    only = status_of(mesh, "HTTPRoute", "route-parentref-lsonly")
    assert [(item["parentRef"]["kind"], item["parentRef"]["name"]) for item in only["parents"]
            ] == [("ListenerSet", "listenerset-parentref")]
    assert status_of(mesh, "Gateway", "gateway-parentref")["attachedListenerSets"] == 1


def test_analyze_reports_a_conflicted_set_listener_where_it_is_written() -> None:
    from controlplane.mesh.analyze import analyze
    objects, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    objects += load_objects((CONFORMANCE / "tests/listenerset-hostname-conflict.yaml").read_text(),
                            "conflict.yaml")
    found = [problem for problem in analyze(objects) if problem.reason == "HostnameConflict"]
    assert found and all(problem.location.obj.startswith("ListenerSet ") for problem in found)


def test_a_set_needs_its_own_reference_grant_for_a_certificate() -> None:
    """ListenerSetReferenceGrant: a grant from ListenerSets, not the Gateway's, lets a set's
    listener use a Secret of another namespace."""
    # the suite's setup makes this certificate (gateway_steps.SUITE_SETUP)
    secret = FRONTEND.replace("tls-validity-checks-certificate", "certificate").replace(
        NS, "gateway-conformance-web-backend")
    mesh = mesh_for("listenerset-reference-grant.yaml", secret)
    good = status_of(mesh, "ListenerSet", "listenerset-with-reference-grant")
    assert conditions(good["conditions"])["Accepted"] == ("True", "Accepted")
    assert listeners(good)["listenerset-with-reference-grant-listener"]["ResolvedRefs"] == (
        "True", "ResolvedRefs")
    bad = status_of(mesh, "ListenerSet", "listenerset-without-reference-grant",
                    "gateway-api-listener-sets-test-reference-grant-ns")
    assert conditions(bad["conditions"])["Accepted"] == ("False", "ListenersNotValid")
    assert listeners(bad)["listenerset-without-reference-grant-listener"]["ResolvedRefs"] == (
        "False", "RefNotPermitted")


def test_a_set_in_another_namespace_serves_its_own_certificate() -> None:
    text = FRONTEND.replace("tls-validity-checks-certificate", "own").replace(NS, "team") + """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: pointsman
  allowedListeners: {namespaces: {from: All}}
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: set, namespace: team}
spec:
  parentRef: {name: edge, namespace: infra}
  listeners:
  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: own}]}}
"""
    mesh = resolve(load_objects(text))
    found = listeners(status_of(mesh, "ListenerSet", "set", "team"))
    assert found["https"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    listener = as_dict(compiled(mesh, gateway("edge", "infra")), LISTENER.type_url,
                       "gateway|443")
    [chain] = listener["filter_chains"]
    certificate = chain["transport_socket"]["typed_config"]["common_tls_context"][
        "tls_certificates"][0]["certificate_chain"]["inline_string"]
    assert certificate.startswith("-----BEGIN CERTIFICATE-----")
