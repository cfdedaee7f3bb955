"""The compiler: a resolved mesh and the registered sidecars -> each node's Envoy resources.

`MeshCompiler.compile_node(node)` returns a `NodeResources`: per xDS type, name -> packed
resource. What a node gets:

- a sidecar: its inbound listeners and `inbound|PORT` clusters (its own: they name its
  addresses), an outbound listener per port number used by any Service (its own: it binds its
  outbound_ip), the route tables `outbound|PORT` (shared by all sidecars of a namespace), and
  the clusters and endpoints of every Service port (shared by all sidecars);
- a Gateway's proxy: its listeners and route tables (shared by the Gateway's replicas on the
  same address) and the clusters and endpoints its routes send to (shared).

Shared resources are packed once (`CachedResource` objects are the same across nodes), so a
thousand sidecars cost a thousand references, not a thousand serialisations; and a change to
one route re-serialises one virtual host and one route table per namespace (memo.py).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from controlplane.cache import CachedResource
from controlplane.mesh.compile.clusters import base_name, cluster, load_assignment
from controlplane.mesh.compile.envoy import pack
from controlplane.mesh.compile.gateway import gateway_part
from controlplane.mesh.compile.http_routes import ClusterUse
from controlplane.mesh.compile.memo import Endpoints, Memo, View
from controlplane.mesh.compile.node import MeshNode, NodeError
from controlplane.mesh.compile.sidecar import (
    OutboundPort,
    Part,
    inbound,
    outbound_listener,
    outbound_port,
)
from controlplane.mesh.resolve import Mesh
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE


@dataclass
class NodeResources:
    """One node's resources by type URL and name, plus notes on what could not be served."""

    resources: dict[str, dict[str, CachedResource]] = field(default_factory=lambda: {
        LISTENER.type_url: {}, ROUTE.type_url: {}, CLUSTER.type_url: {}, ENDPOINT.type_url: {}})
    notes: list[str] = field(default_factory=list)

    def add(self, resource: CachedResource) -> None:
        self.resources[resource.type_url][resource.name] = resource

    def names(self, type_url: str) -> list[str]:
        return sorted(self.resources[type_url])

    def size(self) -> int:
        """Bytes of all resources (what a sidecar receives, before framing)."""
        return sum(len(item.packed.value) for items in self.resources.values()
                   for item in items.values())


class MeshCompiler:
    """Compiles nodes against the current mesh; `update()` swaps the mesh in."""

    def __init__(self, mesh: Mesh | None = None, endpoints: Endpoints | None = None) -> None:
        self.mesh = mesh or Mesh()
        self.endpoints = endpoints or Endpoints()
        self.memo = Memo()

    def update(self, mesh: Mesh | None = None, endpoints: Endpoints | None = None) -> None:
        if mesh is not None:
            self.mesh = mesh
        if endpoints is not None:
            self.endpoints = endpoints
        self.memo.advance()

    def unit(self, key: Hashable, build):  # type: ignore[no-untyped-def]
        return self.memo.get(key, build, self.mesh, self.endpoints)

    def compile_node(self, node: MeshNode) -> NodeResources:
        out = NodeResources()
        if node.kind == "Gateway":
            part = self._gateway(node)
            uses = set(part.uses)
            self._add_part(out, part)
        else:
            uses = self._sidecar(node, out)
        for use in sorted(uses, key=lambda item: item.cluster_name):
            self._add_cluster(out, use)
        return out

    # ---- pieces -----------------------------------------------------------------------------

    def _gateway(self, node: MeshNode) -> Part:
        gateway = self.mesh.get("Gateway", node.namespace, node.name)
        if gateway is None:
            raise NodeError(f"{node}: no such Gateway")
        bind = node.instance_ip or (gateway.spec.addresses[0] if gateway.spec.addresses
                                    else "0.0.0.0")
        part: Part = self.unit(("gateway", node.namespace, node.name, bind),
                               lambda view: gateway_part(view, view.get(
                                   "Gateway", node.namespace, node.name), bind))
        return part

    def _sidecar(self, node: MeshNode, out: NodeResources) -> set[ClusterUse]:
        service = self.mesh.service(node.namespace, node.name)
        if service is None:
            raise NodeError(f"{node}: no such Service")
        if service.spec.ports and node.instance_ip is None:
            raise NodeError(f"{node}: a sidecar needs the node metadata 'instance_ip' (the "
                            "address its inbound listeners bind and its callers reach)")
        if node.instance_ip == node.outbound_ip:
            raise NodeError(f"{node}: instance_ip and outbound_ip must differ (both "
                            f"{node.instance_ip}): inbound and outbound listeners share "
                            "port numbers")
        uses: set[ClusterUse] = set()
        if node.instance_ip is not None:
            self._add_part(out, self.unit(
                ("inbound", node.namespace, node.name, node.instance_ip, node.app_ip),
                lambda view: inbound(view, node.namespace, node.name, str(node.instance_ip),
                                     node.app_ip)))
        for port in self.mesh.ports_in_use():
            found: OutboundPort = self.unit(
                ("outbound", node.namespace, port),
                lambda view, p=port: outbound_port(view, node.namespace, p))
            out.notes += found.notes
            listener = self.unit(("outbound_listener", node.outbound_ip, port, node.namespace),
                                 lambda view, p=port: _listener_unit(view, node, p))
            if listener is None:
                continue
            out.add(listener)
            if found.routes is not None:
                out.add(found.routes)
            uses |= found.uses
        return uses

    def _add_part(self, out: NodeResources, part: Part) -> None:
        for resource in (*part.listeners, *part.routes, *part.clusters):
            out.add(resource)
        out.notes += part.notes

    def _add_cluster(self, out: NodeResources, use: ClusterUse) -> None:
        key = ("cluster", use.namespace, use.name, use.port, use.settings, use.base)
        resource = self.unit(key, lambda view: _cluster_unit(view, use))
        if resource is None:
            return
        out.add(resource)
        out.add(self.unit(("endpoints", use.namespace, use.name, use.port),
                          lambda view: _endpoints_unit(view, use)))


def _listener_unit(view: View, node: MeshNode, port: int) -> CachedResource | None:
    """Reads only the shape of the port (HTTP or TCP, which per-route filters), so a change
    of routes behind an HTTP port leaves its listeners alone."""
    def shape(inner: View) -> tuple[bool, frozenset[str], Any]:
        found: OutboundPort = inner.unit(
            ("outbound", node.namespace, port),
            lambda deeper: outbound_port(deeper, node.namespace, port))
        return found.http, found.features, found.tcp_chain
    http, features, chain = view.unit(("outbound_shape", node.namespace, port), shape)
    return outbound_listener(port, node.outbound_ip,
                             OutboundPort(http, None, chain, frozenset(), features))


def _cluster_unit(view: View, use: ClusterUse) -> CachedResource | None:
    service = view.service(use.namespace, use.name)
    if service is None:
        return None
    protocol = view.protocol(use.namespace, use.name, use.port)
    body = cluster(use.cluster_name, base_name(use.namespace, use.name, use.port), protocol,
                   use.settings)
    return pack(CLUSTER.type_url, use.cluster_name, body)


def _endpoints_unit(view: View, use: ClusterUse) -> CachedResource:
    service = view.service(use.namespace, use.name)
    assert service is not None
    body = load_assignment(view, service, use.port)
    return pack(ENDPOINT.type_url, body["cluster_name"], body)
