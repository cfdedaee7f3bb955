"""A Gateway's proxy: one Envoy listener per port of its accepted listeners, bound at the
node's instance_ip, else the Gateway's first IPAddress address, else 0.0.0.0.

- HTTP listeners sharing a port share one connection manager and route table `gateway|PORT`;
  each hostname a route serves gets a virtual host, owned by the most specific listener
  hostname that covers it (Listener Isolation: a request to foo.example.com is routed with
  the routes of the foo.example.com listener only, not of *.example.com).
- HTTPS (Terminate) and TLS listeners sharing a port are filter chains chosen by SNI
  (tls_inspector): an HTTPS chain terminates TLS with its certificateRefs' Secrets and has
  its own route table `gateway|PORT|LISTENER`; a TLS chain per TLSRoute proxies the
  connection to the route's backends, untouched (mode Passthrough) or decrypted with the
  listener's certificates (mode Terminate, GATEWAY-TLS extended: the backends get plain bytes).
- A TCP listener is a tcp_proxy to its TCPRoute's backends (the first accepted TCPRoute).

Within a virtual host the rules of every route serving that hostname are ordered as
controlplane.mesh.compile.http_routes says, routes with the exact hostname before routes with
a wildcard that covers it, before routes without hostnames (httproute_types.go Hostnames).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from envoy.config.route.v3 import route_components_pb2

from controlplane.cache import CachedResource
from controlplane.mesh.compile.envoy import (
    DOWNSTREAM_TLS,
    TLS_INSPECTOR,
    address,
    filter_,
    pack,
    seconds,
)
from controlplane.mesh.compile.hcm import (
    hcm_filter,
    http_connection_manager,
    per_route_filters,
    rbac_filter,
)
from controlplane.mesh.compile.http_routes import (
    ClusterUse,
    Compiled,
    RuleContext,
    compile_rule,
    edge_use,
    sorted_routes,
)
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.policies import (
    CTP,
    SP,
    cluster_settings,
    merge,
    service_policy,
)
from controlplane.mesh.compile.sidecar import Part, tcp_proxy_filter
from controlplane.mesh.compile.vhosts import VirtualHostOut, route_table, vhost_message
from controlplane.mesh.hostnames import covers, specificity
from controlplane.mesh.kinds.gateway import GatewayListener
from controlplane.mesh.objects import MeshObject, ObjectKey
from controlplane.mesh.resolve import Attachment, precedence_key
from controlplane.resources import LISTENER


@dataclass(frozen=True)
class Served:
    """A route serving a hostname pattern on a listener."""

    attachment: Attachment
    pattern: str


def gateway_part(view: View, gateway: MeshObject, bind: str) -> Part:
    by_port: dict[int, list[GatewayListener]] = defaultdict(list)
    for listener in gateway.spec.listeners:
        if view.listener_ready(gateway.key, listener.name):
            by_port[listener.port].append(listener)
    parts = [_port(view, gateway, bind, port, listeners)
             for port, listeners in sorted(by_port.items())]
    return Part(tuple(item for part in parts for item in part.listeners),
                tuple(item for part in parts for item in part.routes), (),
                frozenset(use for part in parts for use in part.uses),
                tuple(note for part in parts for note in part.notes))


def _port(view: View, gateway: MeshObject, bind: str, port: int,
          listeners: list[GatewayListener]) -> Part:
    protocols = {item.protocol for item in listeners}
    if protocols == {"HTTP"}:
        return _http_port(view, gateway, bind, port, listeners)
    if protocols <= {"HTTPS", "TLS"}:
        return _tls_port(view, gateway, bind, port, listeners)
    return _tcp_port(view, gateway, bind, port, listeners[0])


def _listener(name: str, bind: str, port: int, chains: list[dict[str, Any]],
              inspect_tls: bool = False) -> CachedResource:
    body: dict[str, Any] = {"name": name, "address": address(bind, port),
                            "filter_chains": chains}
    if inspect_tls:
        body["listener_filters"] = [filter_("envoy.filters.listener.tls_inspector",
                                            TLS_INSPECTOR)]
    return pack(LISTENER.type_url, name, body)


# ---- HTTP -------------------------------------------------------------------------------------

def _http_port(view: View, gateway: MeshObject, bind: str, port: int,
               listeners: list[GatewayListener]) -> Part:
    name = f"gateway|{port}"
    vhosts, uses, features = _route_table(view, gateway, listeners, port, "http")
    filters = per_route_filters(features)
    security, notes = _shared_policy(view, gateway, listeners, SP)
    if security is not None and security.spec.authorization is not None:
        filters.append(rbac_filter(security.spec.authorization))
    client, more = _shared_policy(view, gateway, listeners, CTP)
    chain = hcm_filter(http_connection_manager(
        f"gateway_{port}", rds=name, filters=filters, edge=True,
        timeouts=client.spec.timeouts if client is not None else None))
    return Part((_listener(name, bind, port, [{"filters": [chain]}]),),
                (route_table(name, vhosts),), (), uses, notes + more)


def _shared_policy(view: View, gateway: MeshObject, listeners: list[GatewayListener],
                   kind: str) -> tuple[MeshObject | None, tuple[str, ...]]:
    """The policy of listeners sharing one connection manager: it must be the same for all
    of them (a listener-scoped policy cannot tell their requests apart)."""
    found = {item.name: view.policy(kind, gateway.key, item.name) for item in listeners}
    policies = {id(policy): policy for policy in found.values()}
    if len(policies) > 1:
        return None, (f"{gateway.label} port {listeners[0].port}: listeners "
                      f"{', '.join(sorted(found))} share one port but not one {kind}; "
                      "none is applied there",)
    return next(iter(policies.values())), ()


def _route_table(view: View, gateway: MeshObject, listeners: list[GatewayListener],
                 port: int, scheme: str) -> tuple[list[VirtualHostOut], frozenset[ClusterUse],
                                                  set[str]]:
    served: dict[str, dict[str, list[Served]]] = {}  # listener -> domain -> routes
    for listener in listeners:
        for attachment in view.routes_on_listener(gateway.key, listener.name):
            if attachment.route.kind not in ("HTTPRoute", "GRPCRoute"):
                continue
            for listener_name, patterns in attachment.listeners:
                if listener_name != listener.name:
                    continue
                for pattern in patterns:
                    served.setdefault(listener.name, {}).setdefault(pattern, []).append(
                        Served(attachment, pattern))
    owners = _owners(listeners, [domain for domains in served.values() for domain in domains])
    vhosts, uses, features = [], set(), set()
    for domain in sorted(owners, key=specificity):
        owner = owners[domain]
        candidates = [item for pattern, items in served.get(owner.name, {}).items()
                      if pattern == domain or covers(pattern, domain) or pattern == "*"
                      for item in items]
        compiled = _compile_served(view, gateway, owner, candidates, domain, port, scheme)
        body = {"name": f"{owner.name}/{domain}", "domains": [domain],
                "routes": list(sorted_routes(compiled))}
        vhosts.append(VirtualHostOut(str(body["name"]), vhost_message(body), frozenset(),
                                     frozenset()))
        for item in compiled:
            uses |= item.clusters
            features |= item.features
    return vhosts, frozenset(uses), features


def _owners(listeners: list[GatewayListener], domains: list[str]) -> dict[str, GatewayListener]:
    """Each domain goes to the most specific listener hostname that covers it."""
    owners: dict[str, GatewayListener] = {}
    ordered = sorted(listeners, key=lambda item: specificity(item.hostname or "*"))
    for domain in domains:
        for listener in ordered:
            hostname = listener.hostname
            if hostname is None or hostname == domain or covers(hostname, domain):
                owners.setdefault(domain, listener)
                break
    return owners


def _compile_served(view: View, gateway: MeshObject, listener: GatewayListener,
                    candidates: list[Served], domain: str, port: int, scheme: str
                    ) -> list[Compiled]:
    """Rules of the routes serving `domain`, grouped so the exact hostname's routes come
    first, then wildcards by specificity, then routes for any name."""
    seen: set[tuple[object, ...]] = set()
    ordered = sorted(candidates, key=lambda item: (specificity(item.pattern),
                                                   precedence_key(item.attachment.route)))
    out = []
    for group, item in enumerate(ordered):
        route = item.attachment.route
        if route.key in seen:
            continue
        seen.add(route.key)
        for index in range(len(route.spec.rules)):
            compiled = compile_rule(view, RuleContext(route, index, None, gateway.key,
                                                      listener.name, port, scheme))
            rank = specificity(item.pattern)
            compiled.entries = [((*rank, *key), body) for key, body in compiled.entries]
            out.append(compiled)
        del group
    return out


# ---- HTTPS and TLS ---------------------------------------------------------------------------

def _tls_port(view: View, gateway: MeshObject, bind: str, port: int,
              listeners: list[GatewayListener]) -> Part:
    chains: list[dict[str, Any]] = []
    routes: list[CachedResource] = []
    uses: set[ClusterUse] = set()
    notes: list[str] = []
    ordered = sorted(listeners, key=lambda item: specificity(item.hostname or "*"))
    https = [item for item in ordered if item.protocol == "HTTPS"]
    for listener in ordered:
        if listener.protocol == "HTTPS":
            chain, table, used = _https_chain(view, gateway, listener, port, https)
            chains.append(chain)
            routes.append(table)
            uses |= used
        else:
            found, passed, skipped = _tls_route_chains(view, gateway, listener, chains)
            chains += found
            uses |= passed
            notes += skipped
    name = f"gateway|{port}"
    return Part((_listener(name, bind, port, chains, inspect_tls=True),), tuple(routes), (),
                frozenset(uses), tuple(notes))


def _match(hostnames: list[str]) -> dict[str, Any]:
    match: dict[str, Any] = {"transport_protocol": "tls"}
    names = [name for name in hostnames if name != "*"]
    if names:
        match["server_names"] = names
    return match


def _https_chain(view: View, gateway: MeshObject, listener: GatewayListener, port: int,
                 https: list[GatewayListener]
                 ) -> tuple[dict[str, Any], CachedResource, frozenset[ClusterUse]]:
    name = f"gateway|{port}|{listener.name}"
    vhosts, uses, features = _route_table(view, gateway, [listener], port, "https")
    vhosts = _misdirected(listener, https, vhosts)
    filters = per_route_filters(features)
    policy = view.policy(SP, gateway.key, listener.name)
    if policy is not None and policy.spec.authorization is not None:
        filters.append(rbac_filter(policy.spec.authorization))
    client = view.policy(CTP, gateway.key, listener.name)
    hcm = hcm_filter(http_connection_manager(
        f"gateway_{port}_{listener.name}", rds=name, filters=filters, edge=True,
        timeouts=client.spec.timeouts if client is not None else None))
    chain = {"name": listener.name,
             "filter_chain_match": _match([listener.hostname] if listener.hostname else []),
             "transport_socket": {"name": "envoy.transport_sockets.tls",
                                  "typed_config": _tls_context(view, gateway, listener)},
             "filters": [hcm]}
    return chain, route_table(name, vhosts), uses


MISDIRECTED = 421  # RFC 9110 section 15.5.20 Misdirected Request


def _misdirected(listener: GatewayListener, https: list[GatewayListener],
                 vhosts: list[VirtualHostOut]) -> list[VirtualHostOut]:
    """The route table of an HTTPS listener's filter chain (chosen by SNI) with the Hosts it
    must not serve on this connection (gateway_types.go Listener.Hostname, RFC 9110 15.5.20,
    RFC 7540 9.1.2 connection reuse): a Host whose most specific HTTPS listener of the port is
    another one answers 421 - another listener's hostname, and, when another listener takes
    any name, every Host outside this listener's hostname. A Host no other listener takes keeps
    the 404 of an unrouted name (a virtual host for the listener's own hostname, when its
    routes do not cover it all, keeps it from the 421 catch-all)."""
    others = [item for item in https if item.name != listener.name]
    if not others:
        return vhosts
    domains = {_domain(vhost): vhost for vhost in vhosts}
    wanted = [*domains, *(item.hostname for item in others if item.hostname)]
    owners = _owners([listener, *others], wanted)
    kept = [vhost for domain, vhost in domains.items()
            if owners.get(domain, listener) is listener]
    refused = sorted({domain for domain in wanted
                      if owners.get(domain, listener) is not listener}, key=specificity)
    own = listener.hostname
    if own is not None and any(item.hostname is None for item in others):
        refused.append("*")
        if own not in domains:
            kept.append(_direct_vhost(listener, own, 404))
    return kept + [_direct_vhost(listener, domain, MISDIRECTED) for domain in refused]


def _domain(vhost: VirtualHostOut) -> str:
    """The one domain of a Gateway's virtual host (_route_table makes one per domain)."""
    message = route_components_pb2.VirtualHost.FromString(vhost.encoded)
    return str(message.domains[0])


def _direct_vhost(listener: GatewayListener, domain: str, status: int) -> VirtualHostOut:
    body = {"name": f"{listener.name}/{domain}", "domains": [domain], "routes": [
        {"match": {"prefix": "/"}, "direct_response": {"status": status}}]}
    return VirtualHostOut(str(body["name"]), vhost_message(body), frozenset(), frozenset())


def _tls_context(view: View, gateway: MeshObject, listener: GatewayListener,
                 alpn: tuple[str, ...] = ("h2", "http/1.1")) -> dict[str, Any]:
    """The listener's certificateRefs as a DownstreamTlsContext; `alpn` offered (none for a
    TLSRoute's decrypted TCP: the bytes inside are the backend's business)."""
    assert listener.tls is not None
    certificates = []
    for ref in listener.tls.certificate_refs:
        home = listener.origin.namespace if listener.origin else gateway.namespace
        secret = view.get("Secret", ref.namespace or home, ref.name)  # a ListenerSet's: its own
        if secret is None:
            continue
        certificates.append({
            "certificate_chain": {"inline_string": secret.spec.certificate_chain.decode()},
            "private_key": {"inline_string": secret.spec.private_key.decode()}})
    common: dict[str, Any] = {"tls_certificates": certificates}
    if alpn:
        common["alpn_protocols"] = list(alpn)
    out: dict[str, Any] = {"@type": DOWNSTREAM_TLS, "common_tls_context": common}
    validation = view.frontend_validation(gateway.key, listener.name)
    if validation is not None and validation[1] == "AllowValidOnly":
        # spec.tls.frontend (FrontendTLSValidation): the client certificate must chain to
        # the CAs. AllowInsecureFallback ("accept connections even if the client certificate
        # is not presented or fails verification") asks for none.
        common["validation_context"] = {"trusted_ca": {"inline_string": validation[0].decode()}}
        out["require_client_certificate"] = True
    return out


def _tls_route_chains(view: View, gateway: MeshObject, listener: GatewayListener,
                      existing: list[dict[str, Any]]
                      ) -> tuple[list[dict[str, Any]], set[ClusterUse], list[str]]:
    chains: list[dict[str, Any]] = []
    uses: set[ClusterUse] = set()
    notes: list[str] = []
    taken = {name for chain in existing
             for name in chain["filter_chain_match"].get("server_names", ["*"])}
    for attachment in view.routes_on_listener(gateway.key, listener.name):
        if attachment.route.kind != "TLSRoute":
            continue
        patterns = [pattern for name, found in attachment.listeners if name == listener.name
                    for pattern in found]
        fresh = [pattern for pattern in patterns if pattern not in taken]
        if len(fresh) < len(patterns):
            notes.append(f"{attachment.route.label}: hostnames "
                         f"{', '.join(sorted(set(patterns) - set(fresh)))} on {gateway.label} "
                         f"listener {listener.name} are served by an earlier route")
        if not fresh:
            continue
        taken |= set(fresh)
        terminate = listener.tls is not None and listener.tls.mode == "Terminate"
        # decrypted here: re-encrypted towards a backend with a BackendTLSPolicy (GEP-1897:
        # "TLSRoute with termination"); passed through untouched otherwise
        weighted, used = _stream_backends(view, attachment.route,
                                          gateway.key if terminate else None)
        if not weighted:
            notes.append(f"{attachment.route.label}: no usable backend")
            continue
        uses |= used
        chain = tcp_proxy_filter(f"gateway_{listener.port}_{attachment.route.name}",
                                 weighted=weighted, hash_source_ip=_by_source(used))
        found: dict[str, Any] = {
            "name": f"{listener.name}/{attachment.route.namespace}/{attachment.route.name}",
            "filter_chain_match": _match(fresh), "filters": [chain]}
        if listener.tls is not None and listener.tls.mode == "Terminate":
            found["transport_socket"] = {"name": "envoy.transport_sockets.tls",
                                         "typed_config": _tls_context(view, gateway, listener,
                                                                      alpn=())}
        chains.append(found)
    return chains, uses, notes


def _stream_backends(view: View, route: MeshObject, reencrypt: ObjectKey | None = None
                     ) -> tuple[list[tuple[str, int]], set[ClusterUse]]:
    weighted: list[tuple[str, int]] = []
    uses: set[ClusterUse] = set()
    for index, ref in enumerate(route.spec.rules[0].backends):
        backend = view.backend(route.key, 0, index)
        if backend is None or not backend.ok or backend.service is None \
                or backend.port is None or ref.weight == 0:
            continue
        own = merge([service_policy(view, backend.service, backend.port.name)])
        use = edge_use(view, reencrypt, ClusterUse(
            backend.service.namespace, backend.service.name, backend.port.port,
            cluster_settings(own), True))
        uses.add(use)
        weighted.append((use.cluster_name, ref.weight))
    return weighted, uses


def _by_source(uses: set[ClusterUse]) -> bool:
    """A TCP connection can be hashed by its source address only (tcp_proxy hash_policy):
    when a backend's load balancer is ConsistentHash SourceIP."""
    return any(use.settings.load_balancer is not None
               and use.settings.load_balancer.consistent_hash is not None
               and use.settings.load_balancer.consistent_hash.kind == "SourceIP"
               for use in uses)


# ---- TCP --------------------------------------------------------------------------------------

def _tcp_port(view: View, gateway: MeshObject, bind: str, port: int,
              listener: GatewayListener) -> Part:
    attached = [item for item in view.routes_on_listener(gateway.key, listener.name)
                if item.route.kind == "TCPRoute"]
    name = f"gateway|{port}"
    notes = tuple(f"{item.route.label} is not served: {attached[0].route.label} already "
                  f"has {gateway.label} listener {listener.name}" for item in attached[1:])
    weighted: list[tuple[str, int]] = []
    uses: set[ClusterUse] = set()
    if attached:
        weighted, uses = _stream_backends(view, attached[0].route)
    if not weighted:  # nothing to send to: the port is not listened on
        return Part(notes=(*notes, f"{gateway.label} listener {listener.name}: no TCPRoute "
                                   "with a usable backend"))
    chain = tcp_proxy_filter(f"gateway_{port}", weighted=weighted,
                             hash_source_ip=_by_source(uses))
    client = view.policy(CTP, gateway.key, listener.name)
    if client is not None and client.spec.timeouts is not None and \
            client.spec.timeouts.tcp_idle is not None:
        chain["typed_config"]["idle_timeout"] = seconds(client.spec.timeouts.tcp_idle)
    return Part((_listener(name, bind, port, [{"filters": [chain]}]),), (), (),
                frozenset(uses), notes)
