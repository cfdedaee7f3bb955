"""The compiler: a resolved mesh and the registered sidecars -> each node's Envoy resources.

`MeshCompiler.compile_node(node)` returns a `NodeResources`: a list of `ResourceSet` parts
(type URL -> name -> packed `CachedResource`) and notes on what could not be served. Parts are
shared objects, which is what a cache with per-node views should key on:

- `("namespace", ns)`: outbound route tables and every cluster and endpoint set they send
  to; shared by every sidecar of the namespace;
- `("outbound_listeners", ns, outbound_ip)`: a listener per port number in use; shared by the
  sidecars with that outbound_ip;
- `("inbound", ns, name, instance_ip)`: the sidecar's inbound listeners; its own;
- `("inbound_clusters", ns, name, app_ip)`: clusters to the application; shared by the
  replicas with that app_ip;
- `("gateway", ns, name, bind)`: a Gateway's listeners, route tables, clusters and
  endpoints; shared by the replicas binding there.

Packed resources are the same objects across parts and nodes, so a thousand sidecars cost a
thousand references, not a thousand serialisations; and a change to one route re-serialises
one virtual host and one route table per namespace (memo.py).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controlplane.cache import CachedResource
from controlplane.mesh.compile.backend_tls import backend_tls_socket
from controlplane.mesh.compile.clusters import base_name, cluster, load_assignment
from controlplane.mesh.compile.envoy import pack
from controlplane.mesh.compile.gateway import gateway_part
from controlplane.mesh.compile.http_routes import ClusterUse
from controlplane.mesh.compile.memo import Endpoints, Memo, View
from controlplane.mesh.compile.mtls import socket_matches
from controlplane.mesh.compile.node import MeshNode, NodeError
from controlplane.mesh.compile.pods import pod_hosts_unit
from controlplane.mesh.compile.sidecar import (
    OutboundPort,
    Part,
    inbound,
    outbound_listener,
    outbound_port,
)
from controlplane.mesh.compile.workload import workload_inbound
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.resolve import Mesh
from controlplane.mesh.security import port_mode
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE


class ResourceSet:
    """Packed resources by type URL and name, made by one unit and shared by every node that
    uses it (the same object), so per-type views of it are made once (`typed`)."""

    __slots__ = ("by_type", "notes", "typed")

    def __init__(self, by_type: dict[str, dict[str, CachedResource]],
                 notes: tuple[str, ...] = ()) -> None:
        self.by_type = by_type
        self.notes = notes
        self.typed: dict[str, object] = {}  # type URL -> a cache.TypeSnapshot (the adapter's)

    def __eq__(self, other: object) -> bool:
        """Same names and versions (a rebuilt unit keeps the old set: memo.same)."""
        if not isinstance(other, ResourceSet):
            return NotImplemented
        return self.notes == other.notes and self._versions() == other._versions()

    __hash__ = object.__hash__

    def _versions(self) -> dict[str, dict[str, str]]:
        return {type_url: {name: item.version for name, item in items.items()}
                for type_url, items in self.by_type.items() if items}

    def __repr__(self) -> str:
        counts = {key.rsplit(".", 1)[-1]: len(value) for key, value in self.by_type.items()}
        return f"ResourceSet({counts})"


def resource_set(resources: list[CachedResource], notes: tuple[str, ...] = ()) -> ResourceSet:
    by_type: dict[str, dict[str, CachedResource]] = {}
    for item in resources:
        by_type.setdefault(item.type_url, {})[item.name] = item
    return ResourceSet(by_type, notes)


@dataclass
class NodeResources:
    """One node's resources: shared parts (ResourceSets) and notes on what could not be
    served. `resources` merges them (type URL -> name -> packed resource)."""

    parts: list[ResourceSet] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @functools.cached_property
    def resources(self) -> dict[str, dict[str, CachedResource]]:
        merged: dict[str, dict[str, CachedResource]] = {
            LISTENER.type_url: {}, ROUTE.type_url: {}, CLUSTER.type_url: {},
            ENDPOINT.type_url: {}}
        for part in self.parts:
            for type_url, items in part.by_type.items():
                merged.setdefault(type_url, {}).update(items)
        return merged

    def names(self, type_url: str) -> list[str]:
        return sorted(self.resources[type_url])

    def size(self) -> int:
        """Bytes of all resources (what a sidecar receives, before framing)."""
        return sum(len(item.packed.value) for items in self.resources.values()
                   for item in items.values())


class MeshCompiler:
    """Compiles nodes against the current mesh; `update()` swaps the mesh in."""

    def __init__(self, mesh: Mesh | None = None, endpoints: Endpoints | None = None,
                 identity: MeshIdentity | None = None) -> None:
        """`identity`: the control plane issues workload certificates, so sidecars talk mTLS
        (docs/mesh-security.md); None: plaintext between sidecars."""
        self.mesh = mesh or Mesh()
        self.endpoints = endpoints or Endpoints()
        self.identity = identity
        self.memo = Memo(identity=identity)

    def update(self, mesh: Mesh | None = None, endpoints: Endpoints | None = None) -> None:
        """A new mesh: every unit is checked again before reuse. New endpoints alone: only the
        units that read the Services whose endpoints changed (and their users)."""
        if mesh is None and (endpoints is None or endpoints is self.endpoints):
            return
        if mesh is None and endpoints is not None:
            old, self.endpoints = self.endpoints, endpoints
            changed = {key for key in old.by_service.keys() | endpoints.by_service.keys()
                       if old.by_service.get(key) != endpoints.by_service.get(key)}
            namespaces = {key for key in old.workloads.keys() | endpoints.workloads.keys()
                          if old.workloads.get(key) != endpoints.workloads.get(key)}
            self.memo.invalidate([("sidecars", *key) for key in sorted(changed)]
                                 + [("workloads", key) for key in sorted(namespaces)]
                                 + ([("all_workloads",)] if namespaces else []))
            return
        if mesh is not None:
            self.mesh = mesh
        if endpoints is not None:
            self.endpoints = endpoints
        self.memo.advance()

    def fork(self, mesh: Mesh) -> MeshCompiler:
        """A compiler for `mesh` starting from this one's units, to be warmed in a worker
        thread (compile_node on it) while this one keeps serving the loop."""
        forked = MeshCompiler(mesh, self.endpoints, self.identity)
        forked.memo = self.memo.fork()
        return forked

    def warm(self, nodes: list[MeshNode]) -> None:
        """Compile `nodes` and a sidecar of every namespace and every Gateway, so that the
        units all nodes share are built here rather than on the first node's request."""
        seen: set[str] = set()
        extra = [MeshNode("warm", "Gateway", item.name, item.namespace)
                 for item in self.mesh.of_kind("Gateway")]
        for service in self.mesh.of_kind("Service"):
            if service.namespace not in seen:
                seen.add(service.namespace)
                extra.append(MeshNode("warm", "Service", service.name, service.namespace,
                                      "192.0.2.10", "192.0.2.12", "192.0.2.11"))
        for node in [*nodes, *extra]:
            try:
                self.compile_node(node)
            except NodeError:
                continue

    def unit(self, key: Hashable, build):  # type: ignore[no-untyped-def]
        return self.memo.get(key, build, self.mesh, self.endpoints)

    def compile_node(self, node: MeshNode) -> NodeResources:
        parts = self._gateway(node) if node.kind == "Gateway" else self._sidecar(node)
        return NodeResources(parts, [note for part in parts for note in part.notes])

    # ---- pieces -----------------------------------------------------------------------------

    def _gateway(self, node: MeshNode) -> list[ResourceSet]:
        gateway = self.mesh.get("Gateway", node.namespace, node.name)
        if gateway is None:
            raise NodeError(f"{node}: no such Gateway")
        bind = node.instance_ip or (gateway.spec.addresses[0] if gateway.spec.addresses
                                    else "0.0.0.0")

        def build(view: View) -> ResourceSet:
            current = view.get("Gateway", node.namespace, node.name)
            assert current is not None  # checked above, on the same mesh
            found = gateway_part(view, current, bind)
            return resource_set([*found.listeners, *found.routes, *found.clusters,
                                 *_clusters(view, found.uses)], found.notes)
        return [self.unit(("gateway", node.namespace, node.name, bind), build)]

    def _workload(self, node: MeshNode) -> list[ResourceSet]:
        """A workload sidecar: its namespace's outbound side, and inbound listeners for the
        ports the Services selecting it send to (compile/workload.py)."""
        if node.instance_ip is None or node.instance_ip == node.outbound_ip:
            raise NodeError(f"{node}: instance_ip and outbound_ip must be set and differ: "
                            "inbound and outbound listeners share port numbers")
        self._check_workload_app(node)
        namespace, instance, app = node.namespace, node.instance_ip, node.app_ip

        def build(view: View) -> ResourceSet:
            part = workload_inbound(view, namespace, instance, app, node.labels, node.ports)
            return resource_set([*part.listeners, *part.clusters], part.notes)
        return [*self._outbound_parts(node),
                self.unit(("workload_inbound", namespace, instance, app, node.labels,
                           node.ports), build)]

    def _check_workload_app(self, node: MeshNode) -> None:
        """As for a Service's sidecar: the application's ports and the outbound listeners
        must not share an address and port."""
        if node.outbound_ip != node.app_ip:
            return
        labels, ports = dict(node.labels), dict(node.ports)
        targets = {port.target_on(ports) for service in self.mesh.of_kind("Service")
                   if service.namespace == node.namespace and service.spec.selects(labels)
                   for port in service.spec.ports}
        taken = targets & set(self.mesh.ports_in_use())
        if taken:
            raise NodeError(f"{node}: outbound_ip {node.outbound_ip} is also the "
                            f"application's address, and port(s) {sorted(taken)} are both "
                            "a targetPort of a Service selecting it and a Service port its "
                            "outbound listeners bind: give outbound_ip another address")

    def _outbound_parts(self, node: MeshNode) -> list[ResourceSet]:
        namespace = node.namespace
        return [self.unit(("namespace", namespace),
                          lambda view: _namespace_unit(view, namespace)),
                self.unit(("outbound_listeners", namespace, node.outbound_ip),
                          lambda view: _outbound_listeners(view, namespace, node.outbound_ip))]

    def _sidecar(self, node: MeshNode) -> list[ResourceSet]:
        if node.kind == "Workload":
            return self._workload(node)
        service = self.mesh.service(node.namespace, node.name)
        if service is None:
            raise NodeError(f"{node}: no such Service")
        self._check_addresses(node, service)
        namespace, name = node.namespace, node.name
        parts = self._outbound_parts(node)
        if node.instance_ip is not None:
            instance, app = node.instance_ip, node.app_ip
            parts.append(self.unit(("inbound", namespace, name, instance),
                                   lambda view: _inbound_unit(view, namespace, name, instance,
                                                              app, listeners=True)))
            parts.append(self.unit(("inbound_clusters", namespace, name, app),
                                   lambda view: _inbound_unit(view, namespace, name, instance,
                                                              app, listeners=False)))
        return parts

    def _check_addresses(self, node: MeshNode, service: Any) -> None:
        if service.spec.ports and node.instance_ip is None:
            raise NodeError(f"{node}: a sidecar needs the node metadata 'instance_ip' (the "
                            "address its inbound listeners bind and its callers reach)")
        if node.instance_ip == node.outbound_ip:
            raise NodeError(f"{node}: instance_ip and outbound_ip must differ (both "
                            f"{node.instance_ip}): inbound and outbound listeners share "
                            "port numbers")
        if node.outbound_ip == node.app_ip:
            taken = {port.target_port for port in service.spec.ports} & set(
                self.mesh.ports_in_use())
            if taken:
                raise NodeError(f"{node}: outbound_ip {node.outbound_ip} is also the "
                                f"application's address, and port(s) {sorted(taken)} are "
                                "both its targetPort and a Service port its outbound "
                                "listeners bind: give outbound_ip another address")


def _outbound(view: View, namespace: str, port: int) -> OutboundPort:
    found: OutboundPort = view.unit(("outbound", namespace, port),
                                    lambda inner: outbound_port(inner, namespace, port,
                                                                pod_hosts_unit))
    return found


def _namespace_unit(view: View, namespace: str) -> ResourceSet:
    """What every sidecar of a namespace receives alike: the outbound route tables, and the
    clusters and endpoints they send to."""
    resources: list[CachedResource] = []
    uses: set[ClusterUse] = set()
    notes: list[str] = []
    for port in view.ports_in_use():
        found = _outbound(view, namespace, port)
        notes += found.notes
        if found.routes is not None:
            resources.append(found.routes)
        resources += found.clusters
        uses |= found.uses
    return resource_set([*resources, *_clusters(view, uses)], tuple(notes))


def _clusters(view: View, uses: Iterable[ClusterUse]) -> list[CachedResource]:
    out: list[CachedResource] = []
    for use in sorted(uses, key=lambda item: item.cluster_name):
        cluster: CachedResource | None = view.unit(
            ("cluster", use.cluster_name), functools.partial(_cluster_unit, use=use))
        if cluster is None:
            continue
        out.append(cluster)
        out.append(view.unit(("endpoints", use.namespace, use.name, use.port),
                             functools.partial(_endpoints_unit, use=use)))
    return out


def _outbound_listeners(view: View, namespace: str, outbound_ip: str) -> ResourceSet:
    found = []
    for port in view.ports_in_use():
        listener: CachedResource | None = view.unit(
            ("outbound_listener", outbound_ip, port, namespace),
            functools.partial(_listener_unit, namespace=namespace, outbound_ip=outbound_ip,
                              port=port))
        if listener is not None:
            found.append(listener)
    return resource_set(found)


def _inbound_unit(view: View, namespace: str, name: str, instance_ip: str, app_ip: str, *,
                  listeners: bool) -> ResourceSet:
    """A sidecar's own listeners (they bind its instance_ip) or its clusters to its
    application (alike for every replica with the same app_ip)."""
    part: Part = view.unit(("inbound_part", namespace, name, instance_ip, app_ip),
                           lambda inner: inbound(inner, namespace, name, instance_ip, app_ip))
    return resource_set(list(part.listeners if listeners else part.clusters), part.notes)


def _listener_unit(view: View, namespace: str, outbound_ip: str, port: int
                   ) -> CachedResource | None:
    """Reads only the shape of the port (HTTP or TCP, which per-route filters), so a change
    of routes behind an HTTP port leaves its listeners alone."""
    def shape(inner: View) -> tuple[bool, frozenset[str], Any]:
        found = _outbound(inner, namespace, port)
        return found.http, found.features, found.tcp_chain
    http, features, chain = view.unit(("outbound_shape", namespace, port), shape)
    return outbound_listener(port, outbound_ip,
                             OutboundPort(http, None, chain, frozenset(), features))


def _cluster_unit(view: View, use: ClusterUse) -> CachedResource | None:
    service = view.service(use.namespace, use.name)
    if service is None:
        return None
    protocol = view.protocol(use.namespace, use.name, use.port)
    tls = use.settings.backend_tls  # a Gateway's, by BackendTLSPolicy (compile/backend_tls.py)
    if tls is not None:
        view.backend_tls(use.namespace, use.name, use.port)  # read: the policy behind it
        if not tls.usable:
            return None  # no valid CA: the port is not served (5xx), never sent in clear
        protocol = tls.inner
    body = cluster(use.cluster_name, base_name(use.namespace, use.name, use.port), protocol,
                   use.settings)
    if tls is not None:
        body["transport_socket"] = backend_tls_socket(tls, protocol)
    elif mtls_to(view, service, use.port):
        # Per endpoint, as istiod's auto mTLS: mTLS to the endpoints labelled as sidecars,
        # plaintext to the others. On every cluster of the port, whatever its endpoints are
        # now, so a Service's first sidecar changes its EDS only (compile/mtls.py).
        assert view.identity is not None
        body["transport_socket_matches"] = socket_matches(
            view.identity, use.namespace, use.name, use.port, protocol,
            destination_identities(view, service))
    return pack(CLUSTER.type_url, use.cluster_name, body)


def destination_identities(view: View, service: Any) -> list[str]:
    """The SPIFFE IDs a caller accepts from a Service's endpoints, as istiod lists the service
    accounts of a Service's pods: the Service's own (its sidecars registered as it) and, for a
    Service with a selector, those of the workloads it selects (`pointsman sidecar
    --workload NAME` holds the SVID of NAME). Never empty: an empty list would accept any
    certificate of the mesh's CA."""
    identity = view.identity
    assert identity is not None
    names = {service.name}
    if service.spec.selector:
        names |= {workload.name for workload in view.workloads(service.namespace)
                  if service.spec.selects(dict(workload.labels))}
    return [identity.spiffe_id(service.namespace, name) for name in sorted(names)]


def mtls_to(view: View, service: Any, port: int) -> bool:
    """Auto mTLS (Istio's): callers use mTLS to the sidecar endpoints of a Service port
    unless its PeerAuthentication says DISABLE; EndpointSlice addresses are always called in
    plaintext (the cluster's transport_socket_matches, compile/mtls.py)."""
    identity = view.identity
    if identity is None:
        return False
    spec_port = service.spec.port(port)
    target = spec_port.target_port if spec_port is not None else port
    root = identity.root_namespace
    policies = view.in_namespaces("PeerAuthentication", (service.namespace, root))
    return port_mode(policies, service, target, root).mode != "DISABLE"


def _endpoints_unit(view: View, use: ClusterUse) -> CachedResource:
    service = view.service(use.namespace, use.name)
    assert service is not None
    body = load_assignment(view, service, use.port)
    return pack(ENDPOINT.type_url, body["cluster_name"], body)
