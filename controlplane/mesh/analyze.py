"""`analyze`: what in a set of mesh objects will not do what it says, with file and line.

Errors (an apply with them changes nothing, or what they ask cannot happen):
- an object that does not load (unknown field, bad value; the loader's MeshError);
- the same object twice;
- a reference to nothing: a parentRef to a missing Service or Gateway, a backendRef or mirror
  to a missing Service or port, a certificateRef to a missing Secret, or one not permitted;
- appProtocol and route kind that do not fit (a GRPCRoute on an HTTP/1.1 port, an HTTPRoute
  sending to a `tcp` port...);
- conflicted Gateway listeners.

Warnings (it loads, but part of it is dead or surprising):
- a rule match no request can reach, because an earlier match (in the spec's precedence
  order, across every route on that parent) takes every request it would;
- a rule whose backendRefs all have weight 0 (every request gets 500);
- a policy targeting nothing, or Conflicted with an older policy on the same target;
- hostnames on a route attached to a Service (ignored: GAMMA routes match the Service);
- a port without appProtocol (its protocol was guessed from its routes), or with one the mesh
  carries as opaque TCP;
- what the compiler could not serve (two TCP Services on one port, ...);
- a Gateway whose gatewayClassName names no GatewayClass among the objects;
- Istio security policies that select nothing, are shadowed or not enforced
  (analyze_security.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from controlplane.mesh.analyze_security import security_problems
from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.node import MeshNode, NodeError
from controlplane.mesh.compile.vhosts import OTHERS, OWN, VirtualHostOut, service_vhost
from controlplane.mesh.errors import Location, MeshError, Problem
from controlplane.mesh.objects import MeshObject
from controlplane.mesh.resolve import POLICY_KINDS, ROUTE_KINDS, Mesh, resolve

RULE_NAME = re.compile(r"^(httproute|grpcroute)/([^/]+)/([^/]+)/rule/(\d+)/match/(\d+)$")


def analyze(objects: Iterable[MeshObject], load_errors: Iterable[MeshError] = (),
            compiler: MeshCompiler | None = None) -> list[Problem]:
    """`compiler`: one kept across calls (the mesh API's, one per apply), so the units of a
    mesh that barely changed are checked and reused rather than compiled again; its mesh is
    replaced by these objects'."""
    problems = [Problem("error", "Invalid", error.message, error.location)
                for error in load_errors]
    mesh = resolve(objects)
    if compiler is None:
        compiler = MeshCompiler(mesh)
    else:
        compiler.update(mesh=mesh)
    problems += mesh.problems
    problems += _references(mesh)
    problems += _protocols(mesh)
    problems += _policies(mesh)
    problems += _http_only(mesh)
    problems += _gateways(mesh)
    problems += _weights(mesh)
    problems += _shadowed(mesh, compiler)
    problems += _compile_notes(mesh, compiler)
    problems += security_problems(mesh)
    return sorted(problems, key=lambda item: (item.location.file, item.location.line,
                                              item.severity != "error"))


def _references(mesh: Mesh) -> list[Problem]:
    out = []
    for kind in ROUTE_KINDS:
        for route in mesh.of_kind(kind):
            for item in mesh.attachments.get(route.key, []):
                if not item.accepted:
                    severity = "error" if "does not exist" in item.message or \
                        "cannot carry" in item.message else "warning"
                    out.append(Problem(severity, item.reason, item.message,
                                       route.location(("spec", "parentRefs", item.index))))
    for (key, rule, index), backend in mesh.backends.items():
        if not backend.ok:
            out.append(Problem("error", backend.reason, backend.message, mesh.objects[
                key].location(("spec", "rules", rule, "backendRefs", index))))
    for (key, rule, _index), backend in mesh.mirrors.items():
        if not backend.ok:
            route = mesh.objects[key]
            out.append(Problem("error", backend.reason, backend.message, route.location(
                ("spec", "rules", rule, "filters"))))
    return out


def _protocols(mesh: Mesh) -> list[Problem]:
    out = []
    for service in mesh.of_kind("Service"):
        for port in service.spec.ports:
            path = ("spec", "ports", port.index)
            attached = mesh.on_service_port.get((service.namespace, service.name, port.port))
            if port.app_protocol is None and attached:
                guessed = mesh.protocol(service.namespace, service.name, port.port)
                out.append(Problem("warning", "NoAppProtocol",
                                   f"port {port.port} has no appProtocol: carried as {guessed} "
                                   "because of the routes attached to it; say so with "
                                   "appProtocol", service.location(path)))
            elif port.declared == "opaque":
                out.append(Problem("warning", "OpaqueAppProtocol",
                                   f"appProtocol {port.app_protocol!r} is carried as opaque "
                                   "TCP", service.location((*path, "appProtocol"))))
    for kind in ("HTTPRoute", "GRPCRoute"):
        for route in mesh.of_kind(kind):
            services = [item for item in mesh.attachments.get(route.key, [])
                        if item.accepted and item.parent is not None
                        and item.parent.kind == "Service"]
            if services and route.spec.hostnames:
                out.append(Problem("warning", "HostnamesIgnored",
                                   "hostnames are ignored on a route attached to a Service "
                                   "(the Service is what it matches)",
                                   route.location(("spec", "hostnames"))))
    return out


def _policies(mesh: Mesh) -> list[Problem]:
    out = []
    for kind in POLICY_KINDS:
        for policy in mesh.of_kind(kind):
            for condition in mesh.conditions.get(policy.key, []):
                if condition.type == "Accepted" and not condition.ok:
                    out.append(Problem("warning", condition.reason, condition.message,
                                       policy.location(("spec", "targetRefs"))))
                elif condition.message:  # accepted, but some targets were not
                    out.append(Problem("warning", "TargetNotFound", condition.message,
                                       policy.location(("spec", "targetRefs"))))
    return out


def _http_only(mesh: Mesh) -> list[Problem]:
    """Policies a Service's sidecars enforce on HTTP requests: a TCP port of that Service
    is not covered (these are HTTP filters; Istio's AuthorizationPolicy, by contrast, is
    compiled to network RBAC on TCP ports: analyze_security.py)."""
    out = []
    for policy in [*mesh.of_kind("SecurityPolicy"), *mesh.of_kind("BackendTrafficPolicy")]:
        spec = policy.spec
        features = [name for name, present in (
            ("authorization", getattr(spec, "authorization", None) is not None),
            ("rateLimit", getattr(spec, "rate_limit", None) is not None),
            ("faultInjection", getattr(spec, "fault", None) is not None)) if present]
        if not features:
            continue
        for index, ref in enumerate(spec.targets):
            service = mesh.service(policy.namespace, ref.name) if ref.kind == "Service" \
                else None
            if service is None:
                continue
            for port in service.spec.ports:
                if ref.section_name not in (None, port.name):
                    continue
                protocol = mesh.protocol(service.namespace, service.name, port.port)
                if protocol not in ("http", "h2c", "grpc"):
                    out.append(Problem(
                        "warning", "NotEnforced",
                        f"{', '.join(features)} applies to HTTP requests: port {port.port} of "
                        f"{service.label} carries {protocol} and is not covered",
                        policy.location(("spec", "targetRefs", index))))
    return out


def _gateways(mesh: Mesh) -> list[Problem]:
    out = []
    classes = {item.name for item in mesh.of_kind("GatewayClass")}
    for gateway in mesh.of_kind("Gateway"):
        if classes and gateway.spec.class_name not in classes:
            out.append(Problem("warning", "InvalidGatewayClass",
                               f"gatewayClassName {gateway.spec.class_name!r} names no "
                               "GatewayClass among the objects",
                               gateway.location(("spec", "gatewayClassName"))))
        for listener in gateway.spec.listeners:
            # a ListenerSet's listener (served by the Gateway) is reported where it is written
            owner = mesh.objects.get(listener.origin, gateway) if listener.origin else gateway
            name = listener.entry or listener.name
            for condition in mesh.listener_conditions.get((gateway.key, listener.name), []):
                if condition.type in ("Accepted", "ResolvedRefs") and not condition.ok:
                    out.append(Problem("error", condition.reason,
                                       f"listener {name}: {condition.message}",
                                       owner.location(("spec", "listeners", listener.index))))
    return out


def _weights(mesh: Mesh) -> list[Problem]:
    out = []
    for kind in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute"):
        for route in mesh.of_kind(kind):
            for index, rule in enumerate(route.spec.rules):
                if rule.backends and all(ref.weight == 0 for ref in rule.backends):
                    out.append(Problem("warning", "AllWeightsZero",
                                       "every backendRef has weight 0: requests matching this "
                                       "rule get 500",
                                       route.location(("spec", "rules", index, "backendRefs"))))
    return out


def _compile_notes(mesh: Mesh, compiler: MeshCompiler) -> list[Problem]:
    """What the compiler reports it could not serve, for a sidecar of each namespace and for
    each Gateway."""
    out: dict[str, Problem] = {}
    nodes = [MeshNode("analyze", "Gateway", item.name, item.namespace)
             for item in mesh.of_kind("Gateway")]
    seen: set[str] = set()
    for service in mesh.of_kind("Service"):
        if service.namespace not in seen:
            seen.add(service.namespace)
            nodes.append(MeshNode("analyze", "Service", service.name, service.namespace,
                                  "192.0.2.10", "127.0.0.1", "192.0.2.11"))
    for node in nodes:
        try:
            notes = compiler.compile_node(node).notes
        except NodeError as error:
            notes = [str(error)]
        for note in notes:
            if note.startswith("AuthorizationPolicy "):
                continue  # analyze_security reports it for every Service, not one sidecar
            out.setdefault(note, Problem("warning", "NotServed", note, _located(mesh, note)))
    return list(out.values())


def _located(mesh: Mesh, note: str) -> Location:
    found = re.match(r"^(\w+) ([a-z0-9-]+)/([a-z0-9.-]+)", note)
    obj = mesh.get(found.group(1), found.group(2), found.group(3)) if found else None
    return obj.location() if obj is not None else Location()


# ---- shadowed rules ---------------------------------------------------------------------------

def _shadowed(mesh: Mesh, compiler: MeshCompiler) -> list[Problem]:
    """Over the Envoy routes of every Service port (for each caller view) and every Gateway
    virtual host, in the order the sidecar tries them: a match covered by an earlier one.
    The virtual hosts are the compiler's units (compile/sidecar.py keys them the same way)."""
    out: dict[tuple[Any, ...], Problem] = {}
    for (namespace, name, port), attachments in sorted(mesh.on_service_port.items()):
        views = {OWN} | {item.route.namespace for item in attachments
                         if item.route.namespace != namespace}
        for seen_as in sorted(views | ({OTHERS} if len(views) > 1 else set())):
            vhost = compiler.unit(("vhost", namespace, name, port, seen_as),
                                  _vhost_builder(namespace, name, port, seen_as))
            _check_order(mesh, _decode_routes(vhost.encoded), out)
    for gateway in mesh.of_kind("Gateway"):
        try:
            resources = compiler.compile_node(
                MeshNode("analyze", "Gateway", gateway.name, gateway.namespace))
        except NodeError:
            continue
        for table in resources.resources["type.googleapis.com/envoy.config.route.v3."
                                         "RouteConfiguration"].values():
            for routes in _decode_table(table.packed.value):
                _check_order(mesh, routes, out)
    return list(out.values())


def _vhost_builder(namespace: str, name: str, port: int, seen_as: str
                   ) -> Callable[[View], VirtualHostOut]:
    def build(view: View) -> VirtualHostOut:
        return service_vhost(view, namespace, name, port, seen_as)
    return build


def _decode_routes(encoded: bytes) -> list[dict[str, Any]]:
    from envoy.config.route.v3 import route_components_pb2
    from google.protobuf import json_format
    message = route_components_pb2.VirtualHost()
    message.ParseFromString(encoded)
    return list(json_format.MessageToDict(message).get("routes", []))


def _decode_table(encoded: bytes) -> list[list[dict[str, Any]]]:
    from envoy.config.route.v3 import route_pb2
    from google.protobuf import json_format
    message = route_pb2.RouteConfiguration()
    message.ParseFromString(encoded)
    return [list(item.get("routes", [])) for item in
            json_format.MessageToDict(message).get("virtualHosts", [])]


def _check_order(mesh: Mesh, routes: list[dict[str, Any]], out: dict[tuple[Any, ...], Problem]
                 ) -> None:
    for later_index, later in enumerate(routes):
        for earlier in routes[:later_index]:
            if _covers(earlier.get("match", {}), later.get("match", {})):
                problem = _shadow_problem(mesh, earlier.get("name", ""), later.get("name", ""))
                if problem is not None:
                    out.setdefault((later.get("name"),), problem)
                break


def _shadow_problem(mesh: Mesh, earlier: str, later: str) -> Problem | None:
    found = RULE_NAME.match(later)
    if found is None:
        return None
    route = mesh.get({"httproute": "HTTPRoute", "grpcroute": "GRPCRoute"}[found.group(1)],
                     found.group(2), found.group(3))
    if route is None:
        return None
    rule, match = int(found.group(4)), int(found.group(5))
    by = RULE_NAME.match(earlier)
    who = f"{by.group(1)} {by.group(2)}/{by.group(3)} rule {by.group(4)} match " \
          f"{by.group(5)}" if by else earlier
    who = who.replace("httproute", "HTTPRoute").replace("grpcroute", "GRPCRoute")
    return Problem("warning", "Shadowed",
                   f"no request reaches this match: {who} comes first in precedence and "
                   "takes every request it would", route.location(
                       ("spec", "rules", rule, "matches", match)))


def _covers(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """Whether every request `second` matches is matched by `first` (conservative: only
    path forms we can compare; a regular expression covers only an equal one)."""
    if not _path_covers(first, second):
        return False
    return _subset(first.get("headers", []), second.get("headers", [])) and \
        _subset(first.get("queryParameters", []), second.get("queryParameters", []))


def _path_covers(first: dict[str, Any], second: dict[str, Any]) -> bool:
    second_path = second.get("path") or second.get("pathSeparatedPrefix") or \
        second.get("prefix")
    if "prefix" in first and first["prefix"] == "/":
        return True
    if "safeRegex" in first or "safeRegex" in second:
        return first.get("safeRegex") == second.get("safeRegex")
    if second_path is None:
        return False
    if "path" in first:
        return "path" in second and first["path"] == second["path"]
    prefix = first.get("pathSeparatedPrefix") or first.get("prefix") or ""
    if "prefix" in second and second["prefix"] == "/":
        return False
    return second_path == prefix or second_path.startswith(prefix.rstrip("/") + "/")


def _subset(first: list[Any], second: list[Any]) -> bool:
    return all(item in second for item in first)
