"""`analyze` for Istio's security policies (warnings: they load, but part of them does
nothing here):
- a selector that matches no Service (a workload is a Service's sidecars; its labels are the
  Service's `metadata.labels`);
- a second namespace-wide or mesh-wide PeerAuthentication (the oldest one applies);
- a portLevelMtls port that is no targetPort of the Services selected;
- an AuthorizationPolicy rule with HTTP-only fields (hosts, methods, paths, request
  headers) on a Service port that is not HTTP: enforced by network RBAC there, where Istio
  leaves such an ALLOW rule out (it allows nothing) and drops those fields from a DENY rule
  (it denies wider) (compile/authz.py).

A STRICT port of a Service that also has EndpointSlices is no longer a warning: automatic
mTLS is decided per endpoint (compile/mtls.py), so its sidecars are called over mTLS.
"""

from __future__ import annotations

from controlplane.mesh.compile.authz import http_only_fields
from controlplane.mesh.errors import Problem
from controlplane.mesh.identity import ROOT_NAMESPACE
from controlplane.mesh.kinds.istio import selects
from controlplane.mesh.objects import MeshObject
from controlplane.mesh.resolve import HTTP_FAMILY, Mesh
from controlplane.mesh.security import (
    authorization_policies,
    shadowed_peer_policies,
)


def security_problems(mesh: Mesh, root: str = ROOT_NAMESPACE) -> list[Problem]:
    out = []
    peers = mesh.of_kind("PeerAuthentication")
    for policy in [*peers, *mesh.of_kind("AuthorizationPolicy")]:
        out += _selects_nothing(mesh, policy, root)
    for ignored, winner in shadowed_peer_policies(peers, root):
        out.append(Problem("warning", "Conflicted", f"{winner.label} is older and applies to "
                           f"the same {'mesh' if ignored.namespace == root else 'namespace'}: "
                           "this one is ignored", ignored.location(("spec",))))
    for policy in peers:
        out += _unused_ports(mesh, policy)
    out += _not_enforced(mesh, root)
    return out


def _selected(mesh: Mesh, policy: MeshObject, root: str) -> list[MeshObject]:
    return [service for service in mesh.of_kind("Service")
            if (service.namespace == policy.namespace or policy.namespace == root)
            and selects(policy.spec.selector, service.meta.labels)]


def _selects_nothing(mesh: Mesh, policy: MeshObject, root: str) -> list[Problem]:
    if policy.spec.selector is None or _selected(mesh, policy, root):
        return []
    return [Problem("warning", "NoWorkload", "the selector matches no Service's labels",
                    policy.location(("spec", "selector")))]


def _unused_ports(mesh: Mesh, policy: MeshObject) -> list[Problem]:
    services = [service for service in mesh.of_kind("Service")
                if service.namespace == policy.namespace
                and selects(policy.spec.selector, service.meta.labels)]
    targets = {port.target_port for service in services for port in service.spec.ports}
    return [Problem("warning", "NoSuchPort", f"port {port} is no targetPort of the selected "
                    "Services", policy.location(("spec", "portLevelMtls")))
            for port, _mode in policy.spec.port_modes if services and port not in targets]


def _not_enforced(mesh: Mesh, root: str) -> list[Problem]:
    out = []
    policies = mesh.of_kind("AuthorizationPolicy")
    for service in mesh.of_kind("Service"):
        tcp_ports = [port.port for port in service.spec.ports
                     if mesh.protocol(service.namespace, service.name, port.port)
                     not in HTTP_FAMILY]
        if not tcp_ports:
            continue
        for policy in authorization_policies(policies, service, root):
            for index, rule in enumerate(policy.spec.rules):
                fields = http_only_fields(rule)
                if fields:
                    out.append(_http_only_on_tcp(policy, index, fields, service, tcp_ports))
    return out


def _http_only_on_tcp(policy: MeshObject, index: int, fields: list[str], service: MeshObject,
                      ports: list[int]) -> Problem:
    effect = ("this ALLOW rule is left out there: it allows no connection"
              if policy.spec.action == "ALLOW" else
              "they are dropped from this DENY rule there: it denies every connection the "
              "rest of it matches")
    named = ", ".join(fields)
    listed = ", ".join(str(port) for port in ports)
    return Problem("warning", "HttpOnlyOnTcp",
                   f"{named} cannot match on TCP port(s) {listed} of {service.label}; as "
                   f"Istio does, {effect}", policy.location(("spec", "rules", index)))
