"""`explain`: what the mesh does with one request from one caller, computed by the code the
sidecar runs.

The caller's resources are compiled exactly as the control plane would send them (a sidecar
of the `--from` Service, or the proxy of a Gateway), translated into the sidecar's own model
(proxy.model.route, proxy.model.cluster) and the request is matched with the sidecar's own
matcher (proxy.http.routing: virtual host, then the first matching route). What the matched
Envoy route does is then told in mesh terms: the HTTPRoute rule it came from, the backends
and their weights, the policies that apply (timeout, retry, load balancer, health checks,
circuit breakers, and on the receiving sidecar rate limit, authorization and faults), and the
endpoints that could be picked.

Endpoints of sidecars are known to a running control plane only (they register when they
connect); pass them in `endpoints` (controlplane.mesh.compile.memo.Endpoints) when known.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from controlplane.mesh.compile.compiler import MeshCompiler, NodeResources
from controlplane.mesh.compile.memo import Endpoints, Memo, View
from controlplane.mesh.compile.node import MeshNode
from controlplane.mesh.compile.policies import (
    BTP,
    CTP,
    SP,
    merge,
    route_policies,
    service_policy,
)
from controlplane.mesh.explain_authz import admission
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.objects import MeshObject, ObjectKey
from controlplane.mesh.resolve import Mesh
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from proxy.codec.headers import Headers, RequestHead
from proxy.http import filters as _http_filters  # noqa: F401 (registers per-route configs)
from proxy.http.redirect import redirect_reply
from proxy.http.routing import match_route, select_virtual_host
from proxy.model.route import (
    DirectResponseAction,
    ForwardAction,
    RedirectAction,
    translate_route_configuration,
)

CALLER_INSTANCE_IP = "192.0.2.10"  # TEST-NET-1 (RFC 5737): an address no sidecar has
CALLER_OUTBOUND_IP = "192.0.2.11"
SPIFFE_ID = re.compile(r"^spiffe://([^/]+)/ns/([^/]+)/sa/([^/]+)$")
RULE_NAME = re.compile(r"^(httproute|grpcroute)/([^/]+)/([^/]+)/rule/(\d+)/match/(\d+)$")


class ExplainError(ValueError):
    """The question cannot be answered (unknown caller, bad URL)."""


@dataclass
class Backend:
    cluster: str
    weight: int
    share: float  # percent of the requests
    service: str = ""
    port: int = 0
    load_balancer: str = ""
    health_check: str = ""
    circuit_breakers: str = ""
    endpoints: list[str] = field(default_factory=list)
    server_side: list[str] = field(default_factory=list)  # policies the receiver applies
    admission: str = ""  # whether the receiving sidecar lets the caller in (explain_authz)


@dataclass
class Explanation:
    caller: str
    request: str
    listener: str = ""
    virtual_host: str = ""
    route: str = ""  # the Envoy route's name
    rule: str = ""  # the mesh rule it came from
    action: str = ""  # forward | redirect | direct_response | none
    status: int | None = None
    location: str = ""
    backends: list[Backend] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict
        return asdict(self)


def explain(mesh: Mesh, caller: str, method: str, url: str, headers: list[tuple[str, str]],
            *, namespace: str = "default", endpoints: Endpoints | None = None,
            identity: MeshIdentity | None = None) -> Explanation:
    """`caller` may also be a SPIFFE ID (spiffe://DOMAIN/ns/NS/sa/NAME): the Service it
    names calls, presenting that ID. `identity`: the mesh issues certificates (auto mTLS)."""
    caller, peer = _caller_identity(caller, identity)
    node = _caller(mesh, caller, namespace)
    if peer is None and identity is not None:
        peer = identity.spiffe_id(node.namespace, node.name)
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise ExplainError(f"no host in URL {url!r}")
    scheme = parts.scheme or "http"
    port = parts.port or (443 if scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rsplit("@", 1)[-1]
    for name, value in headers:
        if name.lower() == "host":
            authority = value
    out = Explanation(f"{node.kind} {node.namespace}/{node.name}",
                      f"{method.upper()} {scheme}://{authority}{path}")
    compiler = MeshCompiler(mesh, endpoints or Endpoints(), identity)
    resources = compiler.compile_node(node)
    out.notes += resources.notes
    listener_name = f"outbound|{port}" if node.kind == "Service" else f"gateway|{port}"
    listener = _message(resources, LISTENER.type_url, listener_name, listener_pb2.Listener)
    if listener is None:
        out.action = "none"
        out.notes.append(f"{out.caller} has no listener for port {port}: nothing in the mesh "
                         "serves that port")
        return out
    out.listener = listener_name
    chain = _chain(listener, parts.hostname if scheme == "https" else None)
    if chain is None:
        out.action = "none"
        out.notes.append(f"no filter chain of {listener_name} takes server name "
                         f"{parts.hostname}")
        return out
    config = chain[0]["typedConfig"]
    if "rds" not in config:
        _explain_tcp(out, config, resources, mesh, compiler)
        _admissions(out, mesh, identity, None, peer)  # network RBAC at the destination
        return out
    table = _message(resources, ROUTE.type_url, config["rds"]["routeConfigName"],
                     route_pb2.RouteConfiguration)
    assert table is not None
    extras = _set_aside(table)
    request = RequestHead(method=method.upper(), path=path, authority=authority, scheme=scheme,
                          headers=Headers([(name.lower(), value) for name, value in headers]))
    _explain_http(out, translate_route_configuration(table), request, resources, mesh,
                  compiler)
    for feature in extras.get(out.route, []):
        out.policies.append(feature)
    _admissions(out, mesh, identity, request, peer)
    return out


def _caller_identity(caller: str, identity: MeshIdentity | None) -> tuple[str, str | None]:
    """A SPIFFE ID names the calling Service (ns/NS/sa/NAME) and is the peer's identity."""
    found = SPIFFE_ID.match(caller)
    if found is None:
        return caller, None
    if identity is not None and found.group(1) != identity.trust_domain:
        raise ExplainError(f"{caller} is not of the mesh's trust domain "
                           f"{identity.trust_domain!r}")
    return f"{found.group(2)}/{found.group(3)}", caller


def _admissions(out: Explanation, mesh: Mesh, identity: MeshIdentity | None,
                request: RequestHead | None, peer: str | None) -> None:
    for backend in out.backends:
        namespace, _, name = backend.service.partition("/")
        service = mesh.service(namespace, name) if backend.service else None
        if service is not None:
            backend.admission = str(admission(mesh, identity, service, backend.port, request,
                                              peer, CALLER_INSTANCE_IP))


def _set_aside(table: route_pb2.RouteConfiguration) -> dict[str, list[str]]:
    """What a route does besides choosing a backend: per-route filter configs (CORS, faults)
    and mirrors, told in the explanation."""
    found: dict[str, list[str]] = {}
    for vhost in table.virtual_hosts:
        for route in vhost.routes:
            notes = found.setdefault(route.name, [])
            for name in route.typed_per_filter_config:
                notes.append(f"{name.rsplit('.', 1)[-1]} (per-route {name})")
            if route.HasField("route"):
                for mirror in route.route.request_mirror_policies:
                    notes.append(f"mirrored to {mirror.cluster}")
    return found


def _caller(mesh: Mesh, caller: str, namespace: str) -> MeshNode:
    kind = "Service"
    if caller.lower().startswith(("gateway/", "gateways/")):
        kind, caller = "Gateway", caller.split("/", 1)[1]
    elif caller.lower().startswith(("service/", "services/", "svc/")):
        caller = caller.split("/", 1)[1]
    if "/" in caller:
        namespace, caller = caller.split("/", 1)
    if mesh.get(kind, namespace, caller) is None:
        raise ExplainError(f"no {kind} {namespace}/{caller} in the mesh")
    if kind == "Gateway":
        return MeshNode("explain", kind, caller, namespace)
    return MeshNode("explain", kind, caller, namespace, CALLER_INSTANCE_IP, "127.0.0.1",
                    CALLER_OUTBOUND_IP)


def _message(resources: NodeResources, type_url: str, name: str, cls: type) -> Any:
    found = resources.resources[type_url].get(name)
    if found is None:
        return None
    message = cls()
    found.packed.Unpack(message)
    return message


def _chain(listener: listener_pb2.Listener, server_name: str | None) -> Any:
    """The filters of the chain Envoy would pick (by server name, for TLS listeners)."""
    chains = json_format.MessageToDict(listener).get("filterChains", [])
    if server_name is None:
        return chains[0].get("filters") if chains else None
    fallback = None
    for chain in chains:
        names = chain.get("filterChainMatch", {}).get("serverNames", [])
        if server_name in names:
            return chain.get("filters")
        if any(name.startswith("*.") and server_name.endswith(name[1:]) for name in names):
            fallback = fallback or chain.get("filters")
        if not names and fallback is None:
            fallback = chain.get("filters")
    return fallback


def _explain_http(out: Explanation, table: Any, request: RequestHead,
                  resources: NodeResources, mesh: Mesh, compiler: MeshCompiler) -> None:
    vhost = select_virtual_host(table, request.authority)
    if vhost is None:
        out.action = "none"
        out.status = 404
        out.notes.append(f"no virtual host takes {request.authority!r}: the sidecar answers "
                         "404")
        return
    out.virtual_host = vhost.name
    route = match_route(vhost, request)
    if route is None:
        out.action = "none"
        out.status = 404
        out.notes.append(f"no route of {vhost.name} matches: 404 (GAMMA: requests that match "
                         "none of a Service's routes are rejected)")
        return
    out.route = route.name
    rule = _rule_of(mesh, route.name)
    out.rule = rule[0] if rule else route.name
    action = route.action
    if isinstance(action, RedirectAction):
        reply = redirect_reply(action, request, route)  # the sidecar router's own code
        out.action, out.status = "redirect", reply.status
        out.location = reply.headers.get("location") or ""
        return
    if isinstance(action, DirectResponseAction):
        out.action, out.status = "direct_response", action.status
        out.notes.append("every backendRef of the rule is invalid (or has weight 0): 500 "
                         "(HTTPRouteRule.BackendRefs)")
        return
    assert isinstance(action, ForwardAction)
    out.action = "forward"
    gateway, listener = _edge(out, mesh, vhost.name)
    out.policies += _route_policies(action, mesh, rule, gateway, listener)
    out.policies += _listener_policies(mesh, gateway, listener)
    entries = [(action.cluster, 1)] if action.cluster else \
        [(item.name, item.weight) for item in action.weighted_clusters]
    total = sum(weight for _, weight in entries) or 1
    for name, weight in entries:
        out.backends.append(_backend(name, weight, 100.0 * weight / total, resources, mesh,
                                     compiler))


def _explain_tcp(out: Explanation, config: dict[str, Any], resources: NodeResources,
                 mesh: Mesh, compiler: MeshCompiler) -> Explanation:
    out.action = "forward"
    out.notes.append("a TCP listener: the connection is proxied as is")
    if "cluster" in config:
        entries = [(config["cluster"], 1)]
    else:
        entries = [(item["name"], int(item.get("weight", 1)))
                   for item in config.get("weightedClusters", {}).get("clusters", [])]
    total = sum(weight for _, weight in entries) or 1
    for name, weight in entries:
        out.backends.append(_backend(name, weight, 100.0 * weight / total, resources, mesh,
                                     compiler))
    return out


def _rule_of(mesh: Mesh, name: str) -> tuple[str, MeshObject, int] | None:
    found = RULE_NAME.match(name)
    if found is None:
        return None
    kind = {"httproute": "HTTPRoute", "grpcroute": "GRPCRoute"}[found.group(1)]
    route = mesh.get(kind, found.group(2), found.group(3))
    if route is None:
        return None
    index, match = int(found.group(4)), int(found.group(5))
    rule = route.spec.rules[index]
    label = f"{route.label} rule {index}" + (f" ({rule.name})" if rule.name else "") + \
        f" match {match}"
    return label, route, index


def _edge(out: Explanation, mesh: Mesh, vhost: str) -> tuple[ObjectKey | None, str | None]:
    """For a Gateway caller: its key and the listener owning the virtual host (gateway.py
    names them LISTENER/DOMAIN)."""
    if not out.caller.startswith("Gateway "):
        return None, None
    namespace, name = out.caller.split(" ", 1)[1].split("/", 1)
    return ObjectKey("Gateway", namespace, name), vhost.split("/", 1)[0]


def _listener_policies(mesh: Mesh, gateway: ObjectKey | None, listener: str | None
                       ) -> list[str]:
    """What a Gateway listener applies to every request on it."""
    if gateway is None:
        return []
    out = []
    security = mesh.policy_for(SP, gateway, listener)
    if security is not None and security.spec.authorization is not None:
        rules = security.spec.authorization
        out.append(f"authorization at the Gateway: {len(rules.rules)} rule(s), default "
                   f"{rules.default_action} ({security.label})")
    client = mesh.policy_for(CTP, gateway, listener)
    if client is not None and client.spec.timeouts is not None:
        found = client.spec.timeouts
        parts = [f"{label} {value:g}s" for label, value in (
            ("request received", found.request_received), ("idle", found.idle),
            ("stream idle", found.stream_idle)) if value is not None]
        out.append(f"client timeouts: {', '.join(parts)} ({client.label})")
    return out


def _route_policies(action: ForwardAction, mesh: Mesh,
                    rule: tuple[str, MeshObject, int] | None, gateway: ObjectKey | None = None,
                    listener: str | None = None) -> list[str]:
    out = [f"timeout: {action.timeout:g}s" if action.timeout else "timeout: none"]
    retry = action.retry_policy
    if retry is not None:
        detail = f"retry: {retry.num_retries} on {','.join(sorted(retry.retry_on)) or '-'}"
        if retry.retriable_status_codes:
            detail += f" (codes {','.join(map(str, sorted(retry.retriable_status_codes)))})"
        if retry.per_try_timeout:
            detail += f", {retry.per_try_timeout:g}s per try"
        out.append(detail)
    for policy in action.hash_policies:
        out.append(f"consistent hash on {policy.kind}" + (f" {policy.name}" if policy.name
                                                           else ""))
    if rule is not None:
        view = View(mesh, Endpoints(), Memo())
        route = rule[1]
        name = route.spec.rules[rule[2]].name
        sources = merge(route_policies(view, route, name, gateway, listener)).sources
        if sources:
            out.append("from " + ", ".join(sources))
    return out


def _backend(cluster: str, weight: int, share: float, resources: NodeResources, mesh: Mesh,
             compiler: MeshCompiler) -> Backend:
    found = Backend(cluster, weight, share)
    message = _message(resources, CLUSTER.type_url, cluster, cluster_pb2.Cluster)
    if message is None:
        found.load_balancer = "(no such cluster: an invalid backendRef, answered with 500)"
        return found
    parts = cluster.split("|")
    service_name, _, namespace = parts[3].partition(".")
    found.service, found.port = f"{namespace}/{service_name}", int(parts[1])
    found.load_balancer = cluster_pb2.Cluster.LbPolicy.Name(message.lb_policy)
    if message.health_checks:
        check = json_format.MessageToDict(message.health_checks[0])
        kind = next((key for key in check if key.endswith("HealthCheck")), "")
        found.health_check = f"{kind} every {check.get('interval')}, unhealthy after " \
                             f"{check.get('unhealthyThreshold')}, healthy after " \
                             f"{check.get('healthyThreshold')}"
    if message.HasField("outlier_detection"):
        found.health_check += (", " if found.health_check else "") + "passive (outlier " \
                              "detection)"
    if message.circuit_breakers.thresholds:
        found.circuit_breakers = json_format.MessageToJson(
            message.circuit_breakers.thresholds[0], indent=None)
    assignment = _message(resources, ENDPOINT.type_url, message.eds_cluster_config.service_name
                          or cluster, endpoint_pb2.ClusterLoadAssignment)
    if assignment is not None:
        for group in assignment.endpoints:
            for item in group.lb_endpoints:
                socket = item.endpoint.address.socket_address
                health = f" ({health_check_pb2.HealthStatus.Name(item.health_status)})" \
                    if item.health_status else ""
                found.endpoints.append(f"{socket.address}:{socket.port_value}{health}")
    service = mesh.service(namespace, service_name)
    if service is not None:
        found.server_side = _server_side(mesh, service, found.port)
    if not found.endpoints:
        found.endpoints.append("(none known here; sidecars registered as the Service are "
                               "added by a running control plane)")
    return found


def _server_side(mesh: Mesh, service: MeshObject, port: int) -> list[str]:
    """What the receiving sidecars of `service` apply to every caller (inbound)."""
    view = View(mesh, Endpoints(), Memo())
    spec_port = service.spec.port(port)
    name = spec_port.name if spec_port else ""
    traffic = merge([service_policy(view, service, name, BTP)])
    out = []
    if traffic.rate_limit is not None:
        out.append(f"local rate limit {traffic.rate_limit.requests} per "
                   f"{traffic.rate_limit.unit_seconds}s (each sidecar)")
    if traffic.fault is not None:
        out.append("fault injection")
    security = service_policy(view, service, name, SP)
    if security is not None and security.spec.authorization is not None:
        rules = security.spec.authorization
        out.append(f"authorization: {len(rules.rules)} rule(s), default {rules.default_action}"
                   f" ({security.label})")
    if security is not None and security.spec.cors is not None:
        out.append(f"cors ({security.label})")
    return out
