"""A Service's sidecar: inbound listeners for its own ports, outbound listeners and route
tables for the Service ports it may call, and the clusters those name.

Inbound, per port of its Service, at `instance_ip:port`: HTTP ports get an HTTP connection
manager whose filters carry the policies that apply to every caller of the Service (Istio
AuthorizationPolicies as RBAC, compile/authz.py; a SecurityPolicy's authorization and cors,
a BackendTrafficPolicy's local rateLimit and faultInjection, targeting the Service) and
send to `inbound|PORT`, the application at `app_ip:targetPort`; other ports are a tcp_proxy
to it, behind the AuthorizationPolicies as network RBAC filters (compile/authz.py). With a
mesh identity, each port terminates mTLS as its PeerAuthentication mode says
(compile/mtls.py).

Outbound, per port number in use by any Service, at `outbound_ip:port`: for HTTP ports, an
HTTP connection manager with the route table `outbound|PORT` shared by every sidecar of one
namespace, whose virtual hosts are the Services with that port (by name, name.namespace,
name.namespace.svc[.cluster.local], the clusterIP); for a TCP port, a tcp_proxy to the Service
with that port (TCPRoute backends when one is attached). One port carries one protocol: an
HTTP Service and a TCP Service on the same port number cannot both be reached through one
listener (`pointsman analyze` reports it; the HTTP one wins, then the first TCP one by
namespace/name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.cache import CachedResource
from controlplane.mesh.compile.authz import network_rbac_filters, rbac_filters
from controlplane.mesh.compile.clusters import DEFAULT_CONNECT_TIMEOUT, protocol_options
from controlplane.mesh.compile.envoy import (
    FAULT,
    HTTP_OPTIONS_KEY,
    TCP_PROXY,
    address,
    filter_,
    pack,
    seconds,
)
from controlplane.mesh.compile.hcm import (
    hcm_filter,
    http_connection_manager,
    local_ratelimit_filter,
    per_route_filters,
    rbac_filter,
    upstream_reset_marker,
)
from controlplane.mesh.compile.http_routes import (
    CORS_FILTER,
    ClusterUse,
    fault_config,
    policy_cors_config,
)
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.mtls import inbound_chains
from controlplane.mesh.compile.policies import SP, cluster_settings, merge, service_policy
from controlplane.mesh.compile.vhosts import (
    VirtualHostOut,
    caller_view,
    route_table,
    service_vhost,
)
from controlplane.mesh.identity import ROOT_NAMESPACE
from controlplane.mesh.objects import MeshObject
from controlplane.mesh.resolve import HTTP_FAMILY
from controlplane.mesh.security import authorization_policies, port_mode
from controlplane.resources import CLUSTER, LISTENER


@dataclass(frozen=True)
class Part:
    """Resources one unit contributes to a node, and the clusters it sends to."""

    listeners: tuple[CachedResource, ...] = ()
    routes: tuple[CachedResource, ...] = ()
    clusters: tuple[CachedResource, ...] = ()  # clusters it defines itself (inbound)
    uses: frozenset[ClusterUse] = frozenset()
    notes: tuple[str, ...] = ()


# ---- inbound ----------------------------------------------------------------------------------

def inbound(view: View, namespace: str, name: str, instance_ip: str, app_ip: str) -> Part:
    service = view.service(namespace, name)
    if service is None:
        return Part()
    listeners, clusters, notes = [], [], []
    authz = authorizations(view, service)
    for port in service.spec.ports:
        protocol = view.protocol(namespace, name, port.port)
        listener, cluster, said = inbound_port(view, InboundPort(
            service, port.name, port.port, port.target_port, protocol,
            tls_hostnames(view, [(service, port.port)])), instance_ip, app_ip, authz)
        listeners.append(listener)
        clusters.append(cluster)
        notes += said
    return Part(tuple(listeners), (), tuple(clusters), notes=tuple(notes))


@dataclass(frozen=True)
class InboundPort:
    """One port a sidecar serves for a Service: where it listens (`listen`: the Service port
    for a Service's sidecar, the target port for a workload's) and the application's port."""

    service: MeshObject
    port_name: str
    listen: int
    target: int
    protocol: str
    # the hostnames (SNI) of the BackendTLSPolicies of the Service ports sending here: TLS that
    # Gateways originate to the application, passed through (compile/mtls.py)
    passthrough: tuple[str, ...] = ()


def tls_hostnames(view: View, ports: list[tuple[MeshObject, int]]) -> tuple[str, ...]:
    """The `validation.hostname` of the BackendTLSPolicy of each (Service, port), if any."""
    found = {tls.hostname for service, number in ports
             if (tls := view.backend_tls(service.namespace, service.name, number)) is not None}
    return tuple(sorted(found))


def inbound_port(view: View, port: InboundPort, instance_ip: str, app_ip: str,
                 authz: list[MeshObject]) -> tuple[CachedResource, CachedResource, list[str]]:
    """The listener `inbound|LISTEN` at instance_ip (mTLS as the port's PeerAuthentication
    mode says, Istio's AuthorizationPolicies as HTTP RBAC on HTTP ports, network RBAC on the
    others) and its cluster, the application at app_ip:target."""
    service, protocol = port.service, port.protocol
    cluster_name = f"inbound|{port.listen}"
    cluster = pack(CLUSTER.type_url, cluster_name,
                   app_cluster(cluster_name, app_ip, port.target, protocol))
    notes: list[str] = []
    # TCP and TLS passthrough: Istio's policies as network RBAC before the tcp_proxy.
    tcp = [*network_rbac_filters(authz, port.target),
           tcp_proxy_filter(f"inbound_{port.listen}", cluster_name)]
    filters = tcp
    if protocol in HTTP_FAMILY:
        filters = [inbound_http(view, service, port.port_name, port.listen, cluster_name,
                                rbac_filters(authz, port.target))]
    listener = pack(LISTENER.type_url, cluster_name, {
        "name": cluster_name, "address": address(instance_ip, port.listen),
        "traffic_direction": "INBOUND",
        **inbound_chains(inbound_mode(view, service, port.target), filters, protocol,
                         passthrough=port.passthrough, passthrough_filters=tcp)})
    return listener, cluster, notes


def inbound_mode(view: View, service: MeshObject, target_port: int) -> str:
    """The port's PeerAuthentication mode; DISABLE when the mesh issues no identities."""
    identity = view.identity
    if identity is None:
        return "DISABLE"
    root = identity.root_namespace
    policies = view.in_namespaces("PeerAuthentication", (service.namespace, root))
    return port_mode(policies, service, target_port, root).mode


def authorizations(view: View, service: MeshObject) -> list[MeshObject]:
    root = view.identity.root_namespace if view.identity is not None else ROOT_NAMESPACE
    return authorization_policies(
        view.in_namespaces("AuthorizationPolicy", (service.namespace, root)), service, root)


def app_cluster(name: str, ip: str, port: int, protocol: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name, "type": "STATIC", "connect_timeout": seconds(DEFAULT_CONNECT_TIMEOUT),
        "load_assignment": {"cluster_name": name, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": address(ip, port)}}]}]}}
    options = protocol_options(protocol, None)
    if options is not None:
        body["typed_extension_protocol_options"] = {HTTP_OPTIONS_KEY: options}
    return body


def inbound_http(view: View, service: MeshObject, port_name: str, port: int,
                 cluster_name: str, authz: list[dict[str, Any]]) -> dict[str, Any]:
    traffic = merge([service_policy(view, service, port_name)])
    security = service_policy(view, service, port_name, SP)
    filters: list[dict[str, Any]] = list(authz)  # Istio's RBAC first (compile/authz.py)
    vhost: dict[str, Any] = {"name": "inbound", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": cluster_name, "timeout": "0s"}}]}
    features: set[str] = set()
    if security is not None and security.spec.cors is not None:
        vhost["typed_per_filter_config"] = {CORS_FILTER: policy_cors_config(security.spec.cors)}
        features.add(CORS_FILTER)
    filters += per_route_filters(features)
    if security is not None and security.spec.authorization is not None:
        filters.append(rbac_filter(security.spec.authorization))
    if traffic.rate_limit is not None:
        filters.append(local_ratelimit_filter(f"inbound_{port}_ratelimit", traffic.rate_limit))
    if traffic.fault is not None:
        fault = fault_config(traffic.fault)
        fault.pop("@type")
        filters.append(filter_("envoy.filters.http.fault", FAULT, fault))
    return hcm_filter(http_connection_manager(
        f"inbound_{port}", route_config={"name": f"inbound|{port}", "virtual_hosts": [vhost]},
        filters=filters, edge=True, local_reply=upstream_reset_marker()))


def tcp_proxy_filter(stat_prefix: str, cluster: str | None = None,
               weighted: list[tuple[str, int]] | None = None,
               hash_source_ip: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"@type": TCP_PROXY, "stat_prefix": stat_prefix}
    if weighted is not None and len(weighted) > 1:
        body["weighted_clusters"] = {"clusters": [{"name": name, "weight": weight}
                                                  for name, weight in weighted]}
    else:
        body["cluster"] = cluster if cluster is not None else (weighted or [("", 0)])[0][0]
    if hash_source_ip:
        body["hash_policy"] = [{"source_ip": {}}]
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": body}


# ---- outbound ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OutboundPort:
    """What a caller namespace reaches on one port number."""

    http: bool
    routes: CachedResource | None = None
    tcp_chain: dict[str, Any] | None = None
    uses: frozenset[ClusterUse] = frozenset()
    features: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()
    clusters: tuple[CachedResource, ...] = ()  # clusters it defines itself (pods, pods.py)


# More virtual hosts for an HTTP outbound port, and the clusters they send to (pods.py)
ExtraHosts = Callable[[View, int], tuple[list[VirtualHostOut], list[CachedResource]]]


def outbound_port(view: View, caller_namespace: str, port: int,
                  extra: ExtraHosts | None = None) -> OutboundPort:
    services = view.services_with_port(port)
    http = [svc for svc in services if view.protocol(svc.namespace, svc.name, port)
            in HTTP_FAMILY]
    if http:
        notes = tuple(f"{svc.label} port {port} carries "
                      f"{view.protocol(svc.namespace, svc.name, port)}: not reachable "
                      f"through the HTTP outbound listener on {port}"
                      for svc in services if svc not in http)
        return _outbound_http(view, caller_namespace, port, http, notes, extra)
    return _outbound_tcp(view, port, services)


def _outbound_http(view: View, caller_namespace: str, port: int, services: list[MeshObject],
                   notes: tuple[str, ...], extra: ExtraHosts | None = None) -> OutboundPort:
    vhosts: list[VirtualHostOut] = []
    for service in services:
        consumers = view.consumer_namespaces(service.namespace, service.name, port)
        seen_as = caller_view(caller_namespace, service, consumers)
        vhosts.append(_vhost(view, service, port, seen_as))
    more, clusters = extra(view, port) if extra is not None else ([], [])
    table = route_table(f"outbound|{port}", vhosts + more)
    return OutboundPort(True, table, None,
                        frozenset(use for vhost in vhosts for use in vhost.clusters),
                        frozenset(feature for vhost in vhosts for feature in vhost.features),
                        notes, tuple(clusters))


def _vhost(view: View, service: MeshObject, port: int, seen_as: str) -> VirtualHostOut:
    namespace, name = service.namespace, service.name

    def build(inner: View) -> VirtualHostOut:
        return service_vhost(inner, namespace, name, port, seen_as)
    return view.unit(("vhost", namespace, name, port, seen_as), build)


def _outbound_tcp(view: View, port: int, services: list[MeshObject]) -> OutboundPort:
    service = services[0]
    notes = tuple(f"{other.label} shares TCP port {port} with {service.label}: callers reach "
                  f"{service.label} on it" for other in services[1:])
    spec_port = service.spec.port(port)
    own = merge([service_policy(view, service, spec_port.name if spec_port else "")])
    base = ClusterUse(service.namespace, service.name, port, cluster_settings(own), True)
    uses = {base}
    weighted: list[tuple[str, int]] = [(base.cluster_name, 1)]
    attached = [item for item in view.routes_on_service_port(service.namespace, service.name,
                                                             port)
                if item.route.kind == "TCPRoute"]
    if attached:
        weighted, uses = _tcp_route_backends(view, attached[0].route)
    hashing = own.load_balancer is not None and own.load_balancer.consistent_hash is not None \
        and own.load_balancer.consistent_hash.kind == "SourceIP"
    if not weighted:
        return OutboundPort(False, None, None, frozenset(), frozenset(),
                            (*notes, f"{service.label} port {port}: its TCPRoute has no "
                                     "usable backend"))
    chain = tcp_proxy_filter(f"outbound_{port}", weighted=weighted, hash_source_ip=hashing)
    return OutboundPort(False, None, chain, frozenset(uses), frozenset(), notes)


def _tcp_route_backends(view: View, route: MeshObject) -> tuple[list[tuple[str, int]],
                                                                set[ClusterUse]]:
    weighted: list[tuple[str, int]] = []
    uses: set[ClusterUse] = set()
    rule = route.spec.rules[0]
    for index, ref in enumerate(rule.backends):
        backend = view.backend(route.key, 0, index)
        if backend is None or not backend.ok or backend.service is None or ref.weight == 0 \
                or backend.port is None:
            continue
        own = merge([service_policy(view, backend.service, backend.port.name)])
        use = ClusterUse(backend.service.namespace, backend.service.name, backend.port.port,
                         cluster_settings(own), True)
        uses.add(use)
        weighted.append((use.cluster_name, ref.weight))
    return weighted, uses


def outbound_listener(port: int, outbound_ip: str, found: OutboundPort
                      ) -> CachedResource | None:
    name = f"outbound|{port}"
    if not found.http and found.tcp_chain is None:
        return None
    if found.http:
        chain = hcm_filter(http_connection_manager(
            f"outbound_{port}", rds=name, filters=per_route_filters(set(found.features))))
    else:
        assert found.tcp_chain is not None
        chain = found.tcp_chain
    return pack(LISTENER.type_url, name, {
        "name": name, "address": address(outbound_ip, port), "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [chain]}]})
