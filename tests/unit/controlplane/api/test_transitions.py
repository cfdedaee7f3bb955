"""lastTransitionTime (metav1.Condition): set when a condition first appears, kept while its
status stays, moved when the status changes; per route parent too; a recreated object starts
afresh."""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any

from controlplane.api.status import StatusView
from controlplane.mesh import MeshObject, ObjectKey, load_objects, resolve
from controlplane.sources.mesh import MeshCache

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
"""
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules: [{backendRefs: [{name: %s, port: 8080}]}]
"""
KEY = ObjectKey("HTTPRoute", "default", "r")


def served(cache: MeshCache, text: str) -> MeshObject:
    cache.set_mesh(resolve(load_objects(textwrap.dedent(text))))
    return cache.mesh.objects[KEY]


def times(out: dict[str, Any]) -> dict[str, tuple[str, str]]:
    found = {item["type"]: (item["status"], item["lastTransitionTime"])
             for item in out["conditions"]}
    for parent in out["parents"]:
        found.update({"parent " + item["type"]: (item["status"], item["lastTransitionTime"])
                      for item in parent["conditions"]})
    return found


def test_a_transition_moves_the_time_and_nothing_else_does() -> None:
    now = [1_800_000_000.0]
    cache = MeshCache()
    view = StatusView(cache, clock=lambda: now[0])
    route = served(cache, SERVICE + "---" + ROUTE % "nothing")
    assert times(view.of(KEY, route)) == {
        "Accepted": ("True", "2027-01-15T08:00:00Z"),
        "ResolvedRefs": ("False", "2027-01-15T08:00:00Z"),
        "parent Accepted": ("True", "2027-01-15T08:00:00Z"),
        "parent ResolvedRefs": ("False", "2027-01-15T08:00:00Z")}
    now[0] += 60
    assert times(view.of(KEY, route))["ResolvedRefs"] == ("False", "2027-01-15T08:00:00Z")
    route = served(cache, SERVICE + "---" + ROUTE % "api")
    assert times(view.of(KEY, route)) == {
        "Accepted": ("True", "2027-01-15T08:00:00Z"),
        "ResolvedRefs": ("True", "2027-01-15T08:01:00Z"),
        "parent Accepted": ("True", "2027-01-15T08:00:00Z"),
        "parent ResolvedRefs": ("True", "2027-01-15T08:01:00Z")}
    now[0] += 60
    again = dataclasses.replace(route, meta=dataclasses.replace(
        route.meta, creation_timestamp="2027-01-15T08:02:00Z"))  # deleted and created again
    assert times(view.of(KEY, again))["Accepted"] == ("True", "2027-01-15T08:02:00Z")
