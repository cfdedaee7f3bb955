"""Apply and delete planning: outcomes as kubectl prints them, server-managed metadata as the
Kubernetes API server sets it, optimistic concurrency, and all-or-nothing refusals naming
file, line, object and field."""

from __future__ import annotations

import json

from controlplane.api.apply import CONFIGURED, CREATED, UNCHANGED, State, plan_apply, plan_delete
from controlplane.mesh import ObjectKey
from controlplane.mesh.errors import Location
from tests.unit.controlplane.api.helpers import NOW, committed, new_uid, objects

API = """
apiVersion: v1
kind: Service
metadata: {name: api, labels: {team: a}}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
"""
ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules: [{backendRefs: [{name: api, port: 8080}]}]
"""
SERVICE = ObjectKey("Service", "default", "api")


def applied(state: State, text: str, now: str = NOW) -> tuple[State, list[tuple[str, str]]]:
    plan = plan_apply(state, objects(text), now=now, new_uid=new_uid)
    outcomes = [(str(item.key), item.action) for item in plan.outcomes]
    return committed(state, plan), outcomes


def stored(state: State, key: ObjectKey) -> dict[str, object]:
    return dict(json.loads(state.records[key].value))


def test_created_unchanged_configured() -> None:
    state, outcomes = applied(State(), API + "---" + ROUTE)
    assert outcomes == [("Service default/api", CREATED), ("HTTPRoute default/r", CREATED)]
    metadata = stored(state, SERVICE)["metadata"]
    assert metadata == {"name": "api", "namespace": "default", "labels": {"team": "a"},
                        "generation": 1, "creationTimestamp": NOW,
                        "uid": metadata["uid"]}  # type: ignore[index]
    again = plan_apply(state, objects(API), now="2027-01-01T00:00:00Z", new_uid=new_uid)
    assert (again.changes, [item.action for item in again.outcomes]) == (False, [UNCHANGED])

    state2, outcomes = applied(state, API.replace("8080, app", "8081, app"), now="2027-01-01T0"
                                                                               "0:00:00Z")
    assert outcomes == [("Service default/api", CONFIGURED)]
    after = stored(state2, SERVICE)["metadata"]
    assert (after["generation"], after["creationTimestamp"], after["uid"]) == (  # type: ignore
        2, NOW, metadata["uid"])  # type: ignore[index]
    assert state2.objects[SERVICE].meta.generation == 2  # what status reports


def test_metadata_only_changes_keep_the_generation() -> None:
    state, _ = applied(State(), API)
    state, outcomes = applied(state, API.replace("team: a", "team: b"))
    assert outcomes == [("Service default/api", CONFIGURED)]
    assert stored(state, SERVICE)["metadata"]["generation"] == 1  # type: ignore[index]


def test_managed_fields_and_status_from_the_input_are_not_kept() -> None:
    text = API.replace("labels: {team: a}", "labels: {team: a}, generation: 7, uid: x, "
                                            "resourceVersion: '', creationTimestamp: "
                                            "2020-01-01T00:00:00Z") + "status: {a: b}\n"
    state, _ = applied(State(), text)
    data = stored(state, SERVICE)
    assert "status" not in data
    metadata = data["metadata"]
    assert (metadata["generation"], metadata["creationTimestamp"]) == (1, NOW)  # type: ignore


def test_a_stale_resource_version_is_a_conflict_naming_the_line() -> None:
    state, _ = applied(State(), API)
    stale = API.replace("labels: {team: a}", "labels: {team: b}, resourceVersion: '7'")
    plan = plan_apply(state, objects(stale, "api.yaml"), now=NOW, new_uid=new_uid)
    assert [str(problem) for problem in plan.errors] == [
        "api.yaml:4: Service default/api: metadata.resourceVersion: error: Conflict: the object "
        "was modified (it is at resourceVersion 1, not 7); get it again and re-apply (Invalid)"]
    current = API.replace("labels: {team: a}", "labels: {team: b}, resourceVersion: '1'")
    assert not plan_apply(state, objects(current), now=NOW, new_uid=new_uid).errors


def test_an_object_given_twice_refuses_the_whole_apply() -> None:
    plan = plan_apply(State(), objects(API + "---" + ROUTE + "---" + API, "m.yaml"), now=NOW,
                      new_uid=new_uid)
    assert [problem.reason for problem in plan.errors] == ["Duplicate"]
    assert "m.yaml:14: Service default/api" in str(plan.errors[0])


def test_delete_and_missing_objects() -> None:
    state, _ = applied(State(), API + "---" + ROUTE)
    plan = plan_delete(state, [(SERVICE, Location("f.yaml", 2)),
                               (ObjectKey("Service", "default", "ghost"), Location("f.yaml", 9))])
    assert [str(problem) for problem in plan.errors] == [
        "f.yaml:9: error: Service default/ghost not found (NotFound)"]
    plan = plan_delete(state, [(SERVICE, Location()),
                               (ObjectKey("Service", "default", "ghost"), Location())],
                       ignore_missing=True)
    assert (plan.errors, plan.deletes) == ([], [SERVICE])
    assert set(plan.objects) == {ObjectKey("HTTPRoute", "default", "r")}
