"""A Gateway listener's `allowedRoutes.namespaces.from: Selector`: routes attach from the
namespaces whose labels (their Namespace object's, plus kubernetes.io/metadata.name) the
selector matches (kinds/labelselector.py, resolve.py)."""

from __future__ import annotations

import pytest

from controlplane.mesh import MeshError, load_objects
from controlplane.mesh.kinds.labelselector import LabelSelector, Requirement
from tests.unit.controlplane.mesh.helpers import mesh_of


def _gateway(selector: str) -> str:
    return f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: pointsman
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        {selector}
---
apiVersion: v1
kind: Namespace
metadata: {{name: web, labels: {{gateway-conformance: backend}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: app}}
"""


def _route(namespace: str) -> str:
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: {namespace}}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  rules: [{{backendRefs: [{{name: s, port: 80}}]}}]
---
apiVersion: v1
kind: Service
metadata: {{name: s, namespace: {namespace}}}
spec: {{ports: [{{port: 80}}]}}
"""


def _accepted(selector: str, namespace: str) -> tuple[bool, str]:
    mesh = mesh_of(_gateway(selector) + _route(namespace))
    [route] = mesh.of_kind("HTTPRoute")
    [attachment] = mesh.attachments[route.key]
    return attachment.accepted, attachment.reason


@pytest.mark.parametrize("selector, namespace, accepted", [
    ("selector: {matchLabels: {gateway-conformance: backend}}", "web", True),
    ("selector: {matchLabels: {gateway-conformance: backend}}", "app", False),
    ("selector: {matchLabels: {gateway-conformance: backend}}", "undeclared", False),
    # every namespace carries its name as a label, declared or not
    ("selector: {matchLabels: {kubernetes.io/metadata.name: undeclared}}", "undeclared", True),
    ("selector: {matchExpressions: [{key: gateway-conformance, operator: Exists}]}", "web",
     True),
    ("selector: {matchExpressions: [{key: gateway-conformance, operator: NotIn, "
     "values: [backend]}]}", "app", True),
    ("selector: {}", "app", True),  # an empty selector matches everything
    ("", "web", False),  # no selector: nothing (metav1.LabelSelectorAsSelector(nil))
])
def test_routes_attach_from_the_namespaces_the_selector_matches(
        selector: str, namespace: str, accepted: bool) -> None:
    found, reason = _accepted(selector, namespace)
    assert found is accepted
    if not accepted:
        assert reason == "NotAllowedByListeners"


def test_label_selector_requirements() -> None:
    labels = {"a": "1"}
    assert Requirement("a", "In", ("1", "2")).matches(labels)
    assert not Requirement("b", "In", ("1",)).matches(labels)
    assert Requirement("b", "NotIn", ("1",)).matches(labels)  # absent key: NotIn holds
    assert Requirement("b", "DoesNotExist").matches(labels)
    assert LabelSelector().matches({})


@pytest.mark.parametrize("selector, message", [
    ("selector: {matchExpressions: [{key: a, operator: In}]}",
     r"matchExpressions\[0\]\.values: must be non-empty"),
    ("selector: {matchExpressions: [{key: a, operator: Exists, values: [x]}]}",
     r"matchExpressions\[0\]\.values: must be empty"),
    ("selector: {matchExpressions: [{key: a, operator: Has}]}", r"operator"),
    ("selector: {matchFields: {}}", r"matchFields"),
])
def test_bad_selectors_are_named(selector: str, message: str) -> None:
    with pytest.raises(MeshError, match=message):
        load_objects(_gateway(selector))
