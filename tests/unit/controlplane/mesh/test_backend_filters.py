"""URLRewrite and RequestRedirect on a backendRef (HTTPRouteBackendURLRewrite,
HTTPRouteBackendRequestRedirect, on the suite's manifests): with the rule's one backendRef they
are the rule's; on one of several backendRefs, or beside the rule's own, refused by field
path (Envoy's weighted clusters cannot rewrite or redirect per cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.mesh import MeshError, load_objects, read_objects, resolve, status
from controlplane.resources import ROUTE
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, gateway

CONFORMANCE = Path(__file__).parents[4] / "tests/conformance/gateway_api/upstream/conformance"
NS = "gateway-conformance-infra"


def routes_for(manifest: str) -> dict[str, dict[str, Any]]:
    """The Gateway same-namespace's Envoy routes, by their path prefix."""
    objects, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    found = load_objects((CONFORMANCE / "tests" / manifest).read_text())
    mesh = resolve(objects + found)
    [route] = found
    assert status(mesh, route)["conditions"][0]["status"] == "True"
    table = as_dict(compiled(mesh, gateway("same-namespace", NS)), ROUTE.type_url, "gateway|80")
    return {item["match"]["path_separated_prefix"]: item
            for host in table["virtual_hosts"] for item in host["routes"]
            if "path_separated_prefix" in item.get("match", {})}


def test_a_backend_url_rewrite_is_the_rules() -> None:
    routes = routes_for("httproute-backend-url-rewrite.yaml")
    assert routes["/full"]["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/.*$"}, "substitution": "/rewritten-full"}
    assert routes["/prefix"]["route"]["cluster"].endswith("infra-backend-v1." + NS)
    assert routes["/prefix"]["route"]["prefix_rewrite"] == "/rewritten-prefix"


def test_a_backend_request_redirect_is_the_rules() -> None:
    routes = routes_for("httproute-backend-request-redirect.yaml")
    assert routes["/full"]["redirect"]["path_redirect"] == "/redirected-full"
    assert routes["/prefix"]["redirect"]["prefix_rewrite"] == "/redirected-prefix"


ROUTE_TEXT = """apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{name: g}]
  rules:
  - RULE
"""
REWRITE = "{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /x}}}"


@pytest.mark.parametrize(("rule", "field", "message"), [
    (f"backendRefs: [{{name: a, port: 80, filters: [{REWRITE}]}}, {{name: b, port: 80}}]",
     "spec.rules[0].backendRefs[0].filters", "that one backendRef"),
    (f"filters: [{REWRITE}]\n    backendRefs: [{{name: a, port: 80, filters: [{REWRITE}]}}]",
     "spec.rules[0].backendRefs[0].filters", "only one of them"),
])
def test_what_cannot_be_served_is_refused(rule: str, field: str, message: str) -> None:
    with pytest.raises(MeshError) as caught:
        load_objects(ROUTE_TEXT.replace("RULE", rule))
    assert caught.value.field == field and message in caught.value.message
