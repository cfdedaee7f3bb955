"""The mesh API: Kubernetes-shaped objects (Services, Gateway API routes, Envoy Gateway
policies) -> validated typed objects -> per-sidecar Envoy resources.

The small API other parts build on (a future `pointsman apply`, status, the stores):

- `load_objects(text, source) -> list[MeshObject]`: parse and validate one YAML stream; raises
  `MeshError` (file, line, object, field path) on the first bad object. `read_objects` returns
  every error instead; `load_path`/`read_path` read a file or a folder.
- `validate(objects) -> list[Problem]`: whole-set errors that make a set unacceptable as a
  whole (the same object twice). An apply is all or nothing: refuse it when this is not empty.
- `resolve(objects) -> Mesh`: what attaches to what; `Mesh.conditions[key]` holds each object's
  Gateway API conditions (Accepted, ResolvedRefs, with reasons), `status(mesh)` renders them.
- `MeshCompiler(mesh).compile_node(node) -> NodeResources`: a node's Envoy resources
  (controlplane.mesh.compile), incrementally.
- `analyze(objects)`, `explain(...)`: the `pointsman analyze` and `explain` verbs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from controlplane.mesh.errors import Location, MeshError, Problem
from controlplane.mesh.kinds.gateway import GatewayListener
from controlplane.mesh.kinds.refs import ParentRef
from controlplane.mesh.listenersets import merged_name
from controlplane.mesh.load import load_objects, load_path, read_objects, read_path
from controlplane.mesh.objects import MeshObject, ObjectKey
from controlplane.mesh.resolve import Condition, Mesh, listener_ready, resolve, supported_kinds

__all__ = ["Condition", "Location", "Mesh", "MeshError", "MeshObject", "ObjectKey", "Problem",
           "load_objects", "load_path", "read_objects", "read_path", "resolve", "status",
           "validate"]


def validate(objects: Iterable[MeshObject]) -> list[Problem]:
    """Errors that make a set of objects unacceptable as a whole (each object was checked on
    its own by load_objects)."""
    return [problem for problem in resolve(objects).problems if problem.severity == "error"]


def status(mesh: Mesh, obj: MeshObject) -> dict[str, object]:
    """A Gateway API-style status for one object: conditions with observedGeneration (route
    parents and Gateway listeners are listed the way their specs' status fields are)."""
    generation = obj.meta.generation

    def render(conditions: Iterable[Condition]) -> list[dict[str, object]]:
        return [{"type": item.type, "status": item.status, "reason": item.reason,
                 "message": item.message, "observedGeneration": generation}
                for item in conditions]
    out: dict[str, object] = {"conditions": render(mesh.conditions.get(obj.key, []))}
    if obj.kind in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute"):
        resolved = [item for item in mesh.conditions.get(obj.key, [])
                    if item.type == "ResolvedRefs"]
        out["parents"] = [{"parentRef": _parent_ref(item.ref, obj.namespace),
                           "controllerName": "pointsman.io/mesh",
                           "conditions": render([Condition(
                               "Accepted", "True" if item.accepted else "False", item.reason,
                               item.message), *resolved])}
                          for item in mesh.attachments.get(obj.key, [])]
    if obj.kind == "BackendTLSPolicy":  # PolicyStatus: per ancestor (policy_types.go)
        conditions = out["conditions"]
        out["ancestors"] = [{"ancestorRef": {"group": "gateway.networking.k8s.io",
                                             "kind": "Gateway", "namespace": item.namespace,
                                             "name": item.name},
                             "controllerName": "pointsman.io/mesh", "conditions": conditions}
                            for item in mesh.policy_ancestors.get(obj.key, [])]
    if obj.kind == "Gateway":
        out["listeners"] = [_listener(mesh, obj.key, listener, listener.name, render)
                            for listener in obj.spec.listeners if listener.origin is None]
        out["addresses"] = [{"type": "IPAddress", "value": value}
                            for value in obj.spec.addresses]
        # AttachedListenerSets: those selected, with a valid parentRef and Accepted
        out["attachedListenerSets"] = sum(
            1 for key in mesh.listener_sets.get(obj.key, [])
            if all(item.ok for item in mesh.conditions.get(key, []) if item.type == "Accepted"))
    if obj.kind == "ListenerSet":  # ListenerSetStatus: its entries, as its Gateway serves them
        gateway = mesh.listener_set_parent.get(obj.key)
        out["listeners"] = [] if gateway is None else [
            _listener(mesh, gateway, listener, merged_name(obj.key, listener.name), render)
            for listener in obj.spec.listeners]
    return out


def _listener(mesh: Mesh, gateway: ObjectKey, listener: GatewayListener, name: str,
              render: Callable[[Iterable[Condition]], list[dict[str, object]]]
              ) -> dict[str, object]:
    """ListenerStatus (ListenerEntryStatus): conditions, with Programmed (served by the
    Gateway's proxy, else the reason it is not), supportedKinds and attachedRoutes."""
    conditions = list(mesh.listener_conditions.get((gateway, name), []))
    if listener_ready(mesh, gateway, name):
        conditions.append(Condition("Programmed", "True", "Programmed"))
    else:
        why = next((item for item in conditions if item.type == "Accepted" and not item.ok),
                   None)
        conditions.append(Condition("Programmed", "False", why.reason if why else "Invalid",
                                    why.message if why else "not served"))
    return {"name": listener.name, "supportedKinds": [
        {"group": group, "kind": kind} for group, kind in supported_kinds(listener)],
        "conditions": render(conditions),
        "attachedRoutes": len(mesh.on_listener.get((gateway, name), []))}


def _parent_ref(ref: ParentRef, namespace: str) -> dict[str, object]:
    """A route parent's parentRef as the API server defaults it (group, kind and namespace
    filled in; sectionName and port only when set), as the suite compares it."""
    out: dict[str, object] = {"group": ref.group, "kind": ref.kind, "name": ref.name,
                              "namespace": ref.namespace or namespace}
    if ref.section_name is not None:
        out["sectionName"] = ref.section_name
    if ref.port is not None:
        out["port"] = ref.port
    return out
