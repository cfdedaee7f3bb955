"""`DescribeService`: one Service as an operator needs to see it (`pointsman describe service`).

Its ports (declared, and the protocol the mesh carries them as), its endpoints (registered
sidecars and the workloads its selector picks, one per port at its targetPort, HEALTHY while
connected with their listeners ACKed; EndpointSlice addresses with
their ready/terminating conditions), the routes attached to it (GAMMA producer and consumer
routes) and sending to it, the policies targeting it or its routes, the sidecars that serve
it and the proxies whose configuration can send to it (their resources were compiled from
it: controlplane/mesh/compile/deps.py), each with its sync state; its sidecars' SPIFFE ID,
each port's inbound mTLS mode (and the PeerAuthentication that set it), whether callers use
mTLS to its sidecar endpoints, how callers reach each endpoint (automatic mTLS is per
endpoint: EndpointSlice addresses in plaintext), and the Istio security policies that apply
to it.
"""

from __future__ import annotations

from controlplane.api import wire
from controlplane.api.mirror import StoreMirror
from controlplane.api.proxies import ProxyRecord
from controlplane.api.status import StatusView
from controlplane.mesh import MeshObject, ObjectKey
from controlplane.mesh.compile.compiler import mtls_to
from controlplane.mesh.compile.memo import Endpoints, Memo, View
from controlplane.mesh.identity import ROOT_NAMESPACE, MeshIdentity
from controlplane.mesh.resolve import POLICY_KINDS, Mesh
from controlplane.mesh.security import authorization_policies, peer_policies, port_mode
from controlplane.sources.mesh import MeshCache
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb


def describe_service(key: ObjectKey, mirror: StoreMirror, cache: MeshCache,
                     view: StatusView) -> pb.ServiceDescription:
    record = mirror.state.records[key]
    service = mirror.state.objects.get(key)
    out = pb.ServiceDescription(service=wire.object_message(
        record, view.of(key, service, mirror.errors.get(key, ""), record.revision)))
    if service is None:
        return out
    mesh = cache.mesh
    records = view.records()
    identity = cache.compiler.identity
    out.ports.extend(_ports(mesh, service, identity))
    if identity is not None:
        out.identity = identity.spiffe_id(service.namespace, service.name)
    mtls = {port.port: port.callers_use_mtls for port in out.ports}
    out.endpoints.extend(_endpoints(mesh, cache, service, records, mtls))
    out.routes.extend(_routes(mesh, service))
    out.policies.extend(_policies(mesh, service, {use.route.name for use in out.routes
                                                  if use.role.startswith("attached")},
                                  identity))
    out.serving.extend(_proxy_ref(proxy) for proxy in records
                       if (proxy.kind, proxy.namespace, proxy.name) == key)
    out.calling.extend(_proxy_ref(proxy) for proxy in records if key in view.deps(proxy)
                       and (proxy.kind, proxy.namespace, proxy.name) != key)
    return out


def _ports(mesh: Mesh, service: MeshObject, identity: MeshIdentity | None
           ) -> list[pb.ServicePort]:
    out = []
    view = View(mesh, Endpoints(), Memo(identity=identity))
    for port in service.spec.ports:
        if identity is None:
            mode, source = "DISABLE", "no mesh identity"
        else:
            found = port_mode(mesh.of_kind("PeerAuthentication"), service, port.target_port,
                              identity.root_namespace)
            mode, source = found.mode, found.label
        out.append(pb.ServicePort(
            name=port.name, port=port.port, target_port=port.target_port,
            app_protocol=port.app_protocol or "",
            protocol=mesh.protocol(service.namespace, service.name, port.port),
            mtls_mode=mode, mtls_source=source,
            callers_use_mtls=mtls_to(view, service, port.port)))
    return out


def _transport(mtls: dict[int, bool], port: int | None = None) -> str:
    """How callers reach a sidecar endpoint: on `port`, or on every Service port (a registered
    sidecar serves them all): per endpoint, as the cluster's transport_socket_matches."""
    if port is not None:
        return "mTLS" if mtls.get(port) else "plaintext"
    kinds = {"mTLS" if on else "plaintext" for on in mtls.values()}
    if len(kinds) <= 1:
        return kinds.pop() if kinds else "plaintext"
    return ", ".join(f"{'mTLS' if on else 'plaintext'} on {number}"
                     for number, on in sorted(mtls.items()))


def _endpoints(mesh: Mesh, cache: MeshCache, service: MeshObject,
               records: list[ProxyRecord], mtls: dict[int, bool]
               ) -> list[pb.ServiceEndpoint]:
    out = []
    nodes: dict[str, list[str]] = {}
    for proxy in records:
        if (proxy.kind, proxy.namespace, proxy.name) == service.key and proxy.address:
            nodes.setdefault(proxy.address, []).append(proxy.node_id)
    for address in cache.compiler.endpoints.of(service.namespace, service.name):
        names = ", ".join(sorted(nodes.get(address, []))) or "(another replica's)"
        out.append(pb.ServiceEndpoint(address=address, health="HEALTHY",
                                      source=f"sidecar {names}", transport=_transport(mtls)))
    out += _workload_endpoints(cache, service, mtls)
    for item in mesh.slices.get((service.namespace, service.name), []):
        ports = {port.name: port.port for port in item.spec.ports}
        for endpoint in item.spec.endpoints:
            health = "DRAINING" if endpoint.terminating else (
                "HEALTHY" if endpoint.ready else "UNHEALTHY")
            for address in endpoint.addresses:
                for port in service.spec.ports:
                    out.append(pb.ServiceEndpoint(
                        address=address, port=ports.get(port.name, port.target_port),
                        health=health, source=f"EndpointSlice {item.name}",
                        transport="plaintext"))
    return out


def _workload_endpoints(cache: MeshCache, service: MeshObject, mtls: dict[int, bool]
                        ) -> list[pb.ServiceEndpoint]:
    """The workloads the Service's selector picks, per port at its targetPort (a named one as
    the workload declares it; left out where it does not)."""
    if service.spec.selector is None:
        return []
    out = []
    for workload in cache.compiler.endpoints.workloads_in(service.namespace):
        if not service.spec.selects(dict(workload.labels)):
            continue
        for port in service.spec.ports:
            target = port.target_on(dict(workload.ports))
            if target is not None:
                out.append(pb.ServiceEndpoint(address=workload.instance_ip, port=target,
                                              health="HEALTHY",
                                              source=f"workload {workload.name}",
                                              transport=_transport(mtls, port.port)))
    return out


def _routes(mesh: Mesh, service: MeshObject) -> list[pb.RouteUse]:
    out = []
    for port in service.spec.ports:
        for item in mesh.on_service_port.get((service.namespace, service.name, port.port), []):
            role = (f"attached (consumer route for namespace {item.route.namespace})"
                    if item.consumer else "attached")
            out.append(pb.RouteUse(route=wire.ref(item.route.key), role=role, port=port.port,
                                   accepted=item.accepted, reason=item.reason,
                                   detail=item.message))
    seen: set[tuple[ObjectKey, int]] = set()
    for (route, _rule, _index), backend in sorted(mesh.backends.items()):
        if backend.service is None or backend.service.key != service.key or backend.port is None:
            continue
        if (route, backend.port.port) in seen:
            continue
        seen.add((route, backend.port.port))
        out.append(pb.RouteUse(route=wire.ref(route), role="backend", port=backend.port.port,
                               accepted=backend.ok, reason=backend.reason,
                               detail=backend.message))
    return out


def _policies(mesh: Mesh, service: MeshObject, routes: set[str],
              identity: MeshIdentity | None = None) -> list[pb.PolicyUse]:
    out = []
    for kind in POLICY_KINDS:
        for policy in mesh.of_kind(kind):
            for ref in policy.spec.targets:
                wanted = (ref.kind == "Service" and ref.name == service.name) or (
                    ref.kind in ("HTTPRoute", "GRPCRoute", "TCPRoute", "TLSRoute")
                    and ref.name in routes)
                if not wanted or policy.namespace != service.namespace:
                    continue
                target = ObjectKey(ref.kind, policy.namespace, ref.name)
                applied = any(item.policy.key == policy.key
                              for item in mesh.policies.get(target, []))
                reason = next((item.reason for item in mesh.conditions.get(policy.key, [])
                               if item.type == "Accepted" and not applied), "Accepted")
                spec = policy.raw.get("spec") or {}
                out.append(pb.PolicyUse(
                    policy=wire.ref(policy.key), target=wire.ref(target),
                    section=ref.section_name or "", accepted=applied, reason=reason,
                    fields=sorted(name for name in spec if name not in ("targetRefs",
                                                                         "targetRef"))))
    return out + _istio_policies(mesh, service, identity)


def mtls_summary(mesh: Mesh, service: MeshObject, identity: MeshIdentity) -> str:
    """`STRICT` when every port has one mode, else `8080:STRICT,5432:DISABLE`."""
    modes = [(port.port, port_mode(mesh.of_kind("PeerAuthentication"), service,
                                   port.target_port, identity.root_namespace).mode)
             for port in service.spec.ports]
    if len({mode for _, mode in modes}) == 1:
        return modes[0][1]
    return ",".join(f"{port}:{mode}" for port, mode in modes)


def _istio_policies(mesh: Mesh, service: MeshObject, identity: MeshIdentity | None
                    ) -> list[pb.PolicyUse]:
    """The PeerAuthentications that decide its ports and the AuthorizationPolicies its
    sidecars enforce (controlplane/mesh/security.py), targeting it by selector or scope."""
    root = identity.root_namespace if identity is not None else ROOT_NAMESPACE
    found = [*peer_policies(mesh.of_kind("PeerAuthentication"), service, root),
             *authorization_policies(mesh.of_kind("AuthorizationPolicy"), service, root)]
    return [pb.PolicyUse(policy=wire.ref(policy.key), target=wire.ref(service.key),
                         accepted=True, reason="Accepted",
                         fields=sorted((policy.raw.get("spec") or {}).keys()))
            for policy in found]


def _proxy_ref(proxy: ProxyRecord) -> pb.ProxyRef:
    return pb.ProxyRef(node_id=proxy.node_id, kind=proxy.kind, namespace=proxy.namespace,
                       name=proxy.name, address=proxy.address,
                       control_plane=proxy.control_plane, state=proxy.worst)
