"""HTTPRoute and GRPCRoute rules -> Envoy routes, in the spec's precedence order.

Each match of each rule becomes one Envoy route (Envoy takes the first route that matches, so
the order carries the precedence). Across all rules of all routes on one parent (and, at a
Gateway, one hostname), httproute_types.go (HTTPRouteRule.Matches) orders: an Exact path,
then (implementation-specific) RegularExpression paths, then the longest PathPrefix; a method
match; more header matches; more query parameter matches; then the oldest route, the route
first by namespace/name, the rule first in its route. GRPCRoute (grpcroute_types.go) orders
by service characters, method characters, then header matches; its method match becomes a
path (`/service/method`).

Rule actions: RequestRedirect -> `redirect`; backendRefs -> `route` to the Service port's
cluster (weighted_clusters when several, with per-backend header filters), 500 for the share
of invalid backends (cluster_not_found_response_code; Envoy refuses nothing for a missing
RDS cluster) and a direct 500 when none is valid (HTTPRouteRule.BackendRefs); URLRewrite ->
prefix_rewrite/regex_rewrite/host_rewrite_literal; header modifiers -> *_headers_to_add/remove
(set: OVERWRITE_IF_EXISTS_OR_ADD, add: APPEND_IF_EXISTS_OR_ADD); RequestMirror ->
request_mirror_policies; CORS -> typed_per_filter_config envoy.filters.http.cors; timeouts ->
timeout and retry_policy.per_try_timeout; retry -> retry_policy; sessionPersistence -> a
cookie hash_policy on a Maglev cluster variant. Unset timeouts disable Envoy's 15 s default
(a mesh does not cut requests its user did not ask to cut; docs/mesh.md).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from controlplane.mesh.compile.clusters import base_name, variant_name
from controlplane.mesh.compile.envoy import CORS_POLICY, FAULT, seconds
from controlplane.mesh.compile.hcm import UPSTREAM_RESET_HEADER
from controlplane.mesh.compile.memo import View
from controlplane.mesh.compile.policies import (
    SP,
    ClusterSettings,
    TrafficSettings,
    cluster_settings,
    merge,
    route_policies,
    service_policy,
)
from controlplane.mesh.kinds.backendtrafficpolicy import ConsistentHash, FaultInjection
from controlplane.mesh.kinds.filters import Cors, Filters, HeaderModifier, PathModifier
from controlplane.mesh.kinds.grpcroute import GrpcMatch
from controlplane.mesh.kinds.httproute import HttpMatch, ValueMatch
from controlplane.mesh.kinds.securitypolicy import CorsPolicy
from controlplane.mesh.objects import MeshObject, ObjectKey
from controlplane.mesh.resolve import Backend, precedence_key

REDIRECT_CODES = {301: "MOVED_PERMANENTLY", 302: "FOUND", 303: "SEE_OTHER",
                  307: "TEMPORARY_REDIRECT", 308: "PERMANENT_REDIRECT"}
# GEP-1731: SHOULD retry connection errors; retriable-headers: their answer by a backend's
# sidecar (UPSTREAM_RESET_HEADER)
RETRY_ON_CONNECTION = "connect-failure,refused-stream,reset,retriable-headers"
CORS_FILTER = "envoy.filters.http.cors"
FAULT_FILTER = "envoy.filters.http.fault"


@dataclass(frozen=True)
class ClusterUse:
    """A cluster a route sends to: a Service port with its settings."""

    namespace: str
    name: str
    port: int
    settings: ClusterSettings
    base: bool  # the Service's own settings: the shared base cluster

    @functools.cached_property
    def cluster_name(self) -> str:
        """Unique per (Service port, settings): also the unit's memo key."""
        if self.base:
            return base_name(self.namespace, self.name, self.port)
        return variant_name(self.namespace, self.name, self.port, self.settings)


def edge_use(view: View, gateway: ObjectKey | None, use: ClusterUse) -> ClusterUse:
    """A Gateway's route to a port with a BackendTLSPolicy sends to a cluster of its own that
    originates the policy's TLS (controlplane.mesh.backendtls); sidecars' (`gateway` None)
    stay as they are."""
    if gateway is None:
        return use
    tls = view.backend_tls(use.namespace, use.name, use.port)
    if tls is None:
        return use
    client = view.client_certificate(gateway)
    if client is not None:  # spec.tls.backend.clientCertificateRef: a cluster per Gateway
        tls = replace(tls, client_chain=client[0], client_key=client[1])
    return ClusterUse(use.namespace, use.name, use.port,
                      replace(use.settings, backend_tls=tls), False)


@dataclass(frozen=True)
class RuleContext:
    """Where a rule is compiled: for a mesh Service parent, or a Gateway listener."""

    route: MeshObject
    rule_index: int
    parent_service: MeshObject | None = None
    gateway: ObjectKey | None = None
    listener: str | None = None
    port: int = 80  # the parent port (redirects keep it by default)
    scheme: str = "http"


@dataclass
class Compiled:
    """A rule's Envoy routes (one per match, with its sort key) and what they need."""

    entries: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    clusters: set[ClusterUse] = field(default_factory=set)
    features: set[str] = field(default_factory=set)


def compile_rule(view: View, ctx: RuleContext) -> Compiled:
    route = ctx.route
    rule = route.spec.rules[ctx.rule_index]
    out = Compiled()
    policies = route_policies(view, route, rule.name, ctx.gateway, ctx.listener)
    traffic = merge([*policies, _service_level(view, ctx, rule)])
    action = _action(view, ctx, rule, policies, traffic, out)
    extra = _per_filter(view, ctx, rule.filters.cors, policies, traffic, out)
    common: dict[str, Any] = {**action, **_mutations(rule.filters)}
    if extra:
        common["typed_per_filter_config"] = extra
    if route.kind == "GRPCRoute":
        matches: list[tuple[tuple[Any, ...], dict[str, Any], int]] = [
            (*_grpc_match(match), match.index) for match in rule.matches]
    else:
        matches = [(*_http_match(match), match.index) for match in rule.matches]
    age = precedence_key(route)
    for key, match, index in matches:
        name = f"{route.kind.lower()}/{route.namespace}/{route.name}/rule/{ctx.rule_index}" \
               f"/match/{index}"
        out.entries.append(((*key, age, ctx.rule_index, index),
                            {"name": name, "match": match, **common}))
    return out


def _service_level(view: View, ctx: RuleContext, rule: Any) -> MeshObject | None:
    """The least specific BackendTrafficPolicy of a rule: its parent Service's (a mesh route),
    else its first usable backend Service's (a Gateway route)."""
    if ctx.parent_service is not None:
        return service_policy(view, ctx.parent_service, "")
    for index in range(len(rule.backends)):
        backend = view.backend(ctx.route.key, ctx.rule_index, index)
        if backend is not None and backend.ok and backend.service is not None \
                and backend.port is not None:
            return service_policy(view, backend.service, backend.port.name)
    return None


# ---- matches ----------------------------------------------------------------------------------

def _http_match(match: HttpMatch) -> tuple[tuple[Any, ...], dict[str, Any]]:
    path = match.path
    body: dict[str, Any]
    if path.kind == "Exact":
        body, rank = {"path": path.value}, 0
    elif path.kind == "RegularExpression":
        body, rank = {"safe_regex": {"regex": path.value}}, 1
    else:
        prefix = path.value.rstrip("/")
        body = {"path_separated_prefix": prefix} if prefix else {"prefix": "/"}
        rank = 2
    headers = [_value_matcher(item.name.lower(), item) for item in match.headers]
    if match.method:
        headers.append({"name": ":method", "string_match": {"exact": match.method}})
    if headers:
        body["headers"] = headers
    if match.query:
        body["query_parameters"] = [_value_matcher(item.name, item) for item in match.query]
    key = (rank, -len(path.value.rstrip("/") or "/") if rank != 1 else -len(path.value),
           0 if match.method else 1, -len(match.headers), -len(match.query))
    return key, body


def _grpc_match(match: GrpcMatch) -> tuple[tuple[Any, ...], dict[str, Any]]:
    method = match.method
    body: dict[str, Any]
    if method is None:
        body, key = {"prefix": "/"}, (2, -1, 0)
    elif method.kind == "Exact" and method.service and method.method:
        body = {"path": f"/{method.service}/{method.method}"}
        key = (0, -len(method.service), -len(method.method))
    elif method.kind == "Exact" and method.service:
        body, key = {"prefix": f"/{method.service}/"}, (2, -len(method.service), 0)
    else:
        service = re.escape(method.service) if method.kind == "Exact" and method.service \
            else (method.service or "[^/]+")
        name = re.escape(method.method) if method.kind == "Exact" and method.method \
            else (method.method or "[^/]+")
        body = {"safe_regex": {"regex": f"/{service}/{name}"}}
        key = (1, -len(method.service or ""), -len(method.method or ""))
    if match.headers:
        body["headers"] = [_value_matcher(item.name.lower(), item) for item in match.headers]
    return (*key, -len(match.headers), 0), body


def _value_matcher(name: str, item: ValueMatch) -> dict[str, Any]:
    if item.kind == "RegularExpression":
        return {"name": name, "string_match": {"safe_regex": {"regex": item.value}}}
    return {"name": name, "string_match": {"exact": item.value}}


# ---- actions ----------------------------------------------------------------------------------

def _action(view: View, ctx: RuleContext, rule: Any, policies: list[MeshObject | None],
            traffic: TrafficSettings, out: Compiled) -> dict[str, Any]:
    filters: Filters = rule.filters
    if filters.redirect is not None:
        return {"redirect": _redirect(ctx, rule, filters)}
    backends = [view.backend(ctx.route.key, ctx.rule_index, index)
                for index in range(len(rule.backends))]
    weighted = [(backend, ref.weight) for backend, ref in zip(backends, rule.backends,
                                                              strict=True)
                if backend is not None and ref.weight > 0]
    if not any(backend.ok for backend, _ in weighted):
        return {"direct_response": {"status": 500}}
    entries = []
    for backend, weight in weighted:
        entries.append(_weighted_entry(view, ctx, rule, policies, backend, weight, out))
    action: dict[str, Any] = {}
    if len(entries) == 1 and set(entries[0]) == {"name", "weight"}:
        action["cluster"] = entries[0]["name"]
    else:
        action["weighted_clusters"] = {"clusters": entries}
        action["cluster_not_found_response_code"] = "INTERNAL_SERVER_ERROR"
    action.update(_timeouts_and_retries(rule, traffic))
    hashing = _hash_policies(rule, traffic, view, weighted)
    if hashing:
        action["hash_policy"] = hashing
    if filters.rewrite is not None:
        action.update(_rewrite(rule, filters))
    mirrors = _mirrors(view, ctx, rule, out)
    if mirrors:
        action["request_mirror_policies"] = mirrors
    return {"route": action}


def _weighted_entry(view: View, ctx: RuleContext, rule: Any,
                    policies: list[MeshObject | None], backend: Backend, weight: int,
                    out: Compiled) -> dict[str, Any]:
    entry: dict[str, Any]
    if not backend.ok or backend.service is None or backend.port is None:
        entry = {"name": f"invalid|{backend.reason}|{backend.ref.name}", "weight": weight}
    else:
        service, port = backend.service, backend.port
        own = service_policy(view, service, port.name)
        base = cluster_settings(merge([own]))
        settings = cluster_settings(merge([*policies, own]), rule.session)
        use = edge_use(view, ctx.gateway, ClusterUse(service.namespace, service.name, port.port,
                                             settings, settings == base))
        out.clusters.add(use)
        entry = {"name": use.cluster_name, "weight": weight}
    for backend_filters in backend.ref.filters:
        assert isinstance(backend_filters, Filters)
        entry.update(_mutations(backend_filters))
    return entry


def _timeouts_and_retries(rule: Any, traffic: TrafficSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    timeouts = getattr(rule, "timeouts", None)
    request = timeouts.request if timeouts is not None and timeouts.request is not None \
        else traffic.request_timeout
    out["timeout"] = seconds(request or 0.0)
    retry: dict[str, Any] = {}
    own = getattr(rule, "retry", None)
    if own is not None:
        retry = {"retry_on": RETRY_ON_CONNECTION + (",retriable-status-codes"
                                                     if own.codes else ""),
                 "num_retries": 2 if own.attempts is None else own.attempts,
                 # a backend sidecar's answer to its application's reset (hcm.py)
                 "retriable_headers": [{"name": UPSTREAM_RESET_HEADER, "present_match": True}]}
        if own.codes:
            retry["retriable_status_codes"] = list(own.codes)
        if own.backoff:
            retry["retry_back_off"] = {"base_interval": seconds(own.backoff)}
    elif traffic.retry is not None:
        policy = traffic.retry
        retry = {"retry_on": ",".join(policy.triggers), "num_retries": policy.num_retries}
        if policy.status_codes:
            retry["retriable_status_codes"] = list(policy.status_codes)
        if policy.per_try_timeout is not None:
            retry["per_try_timeout"] = seconds(policy.per_try_timeout)
        if policy.backoff_base is not None:
            retry["retry_back_off"] = {"base_interval": seconds(policy.backoff_base)}
            if policy.backoff_max is not None:
                retry["retry_back_off"]["max_interval"] = seconds(policy.backoff_max)
    if timeouts is not None and timeouts.backend_request is not None:
        retry.setdefault("num_retries", 0)
        retry["per_try_timeout"] = seconds(timeouts.backend_request)
    if retry:
        out["retry_policy"] = retry
    return out


def _hash_policies(rule: Any, traffic: TrafficSettings, view: View,
                   weighted: list[tuple[Backend, int]]) -> list[dict[str, Any]]:
    if rule.session is not None:
        ttl = rule.session.max_age or 0.0
        return [{"cookie": {"name": rule.session.name, "ttl": seconds(ttl), "path": "/"}}]
    lb = traffic.load_balancer
    if lb is None:  # the backend Service's own load balancer
        for backend, _ in weighted:
            if backend.ok and backend.service is not None and backend.port is not None:
                own = merge([service_policy(view, backend.service, backend.port.name)])
                lb = own.load_balancer
                break
    if lb is None or lb.consistent_hash is None:
        return []
    return hash_policies(lb.consistent_hash)


def hash_policies(hashing: ConsistentHash) -> list[dict[str, Any]]:
    if hashing.kind == "SourceIP":
        return [{"connection_properties": {"source_ip": True}}]
    if hashing.kind in ("Header", "Headers"):
        return [{"header": {"header_name": name}} for name in hashing.headers]
    if hashing.kind == "QueryParams":
        return [{"query_parameter": {"name": name}} for name in hashing.query_params]
    assert hashing.cookie is not None
    cookie: dict[str, Any] = {"name": hashing.cookie.name}
    if hashing.cookie.ttl is not None:
        cookie["ttl"] = seconds(hashing.cookie.ttl)
    return [{"cookie": cookie}]


def _rewrite(rule: Any, filters: Filters) -> dict[str, Any]:
    rewrite = filters.rewrite
    assert rewrite is not None
    out: dict[str, Any] = {}
    if rewrite.hostname:
        out["host_rewrite_literal"] = rewrite.hostname
    if rewrite.path is not None:
        out.update(_path_rewrite(rewrite.path, rule))
    return out


def _path_rewrite(path: PathModifier, rule: Any) -> dict[str, Any]:
    """URLRewrite/RequestRedirect path -> Envoy (httproute_types.go HTTPPathModifier table)."""
    if path.kind == "ReplaceFullPath":
        return {"regex_rewrite": {"pattern": {"regex": "^/.*$"}, "substitution": path.value}}
    prefix = rule.matches[0].path.value.rstrip("/")
    replacement = path.value.rstrip("/")
    if not prefix:  # the match is PathPrefix "/": keep the rest of the path after the new one
        return {"regex_rewrite": {"pattern": {"regex": "^/"},
                                  "substitution": f"{replacement}/"}}
    if not replacement:  # "/foo/bar" -> "/bar", "/foo" and "/foo/" -> "/"
        return {"regex_rewrite": {"pattern": {"regex": f"^{re.escape(prefix)}/*"},
                                  "substitution": "/"}}
    return {"prefix_rewrite": replacement}


def _redirect(ctx: RuleContext, rule: Any, filters: Filters) -> dict[str, Any]:
    redirect = filters.redirect
    assert redirect is not None
    out: dict[str, Any] = {"response_code": REDIRECT_CODES[redirect.status_code]}
    if redirect.scheme:
        out["scheme_redirect"] = redirect.scheme
    if redirect.hostname:
        out["host_redirect"] = redirect.hostname
    # HTTPRequestRedirectFilter.Port: unset -> the scheme's well-known port when a scheme is
    # given, else the listener's port; 80 (http) and 443 (https) are not written.
    if redirect.port is not None:
        out["port_redirect"] = redirect.port
    elif redirect.scheme:
        out["port_redirect"] = 443 if redirect.scheme == "https" else 80
    else:
        out["port_redirect"] = ctx.port
    if redirect.path is not None:
        if redirect.path.kind == "ReplaceFullPath":
            out["path_redirect"] = redirect.path.value
        else:
            rewrite = _path_rewrite(redirect.path, rule)
            out.update(rewrite)
    return out


def _mirrors(view: View, ctx: RuleContext, rule: Any, out: Compiled) -> list[dict[str, Any]]:
    found = []
    for index, mirror in enumerate(rule.filters.mirrors):
        backend = view.mirror(ctx.route.key, ctx.rule_index, index)
        if backend is None or not backend.ok or backend.service is None \
                or backend.port is None:
            continue  # not configured (HTTPRequestMirrorFilter.BackendRef: dropped)
        service = backend.service
        own = cluster_settings(merge([service_policy(view, service, backend.port.name)]))
        use = edge_use(view, ctx.gateway, ClusterUse(service.namespace, service.name,
                                             backend.port.port, own, True))
        out.clusters.add(use)
        policy: dict[str, Any] = {"cluster": use.cluster_name}
        if mirror.percent < 100:
            policy["runtime_fraction"] = {"default_value": {
                "numerator": round(mirror.percent * 10_000), "denominator": "MILLION"}}
        found.append(policy)
    return found


def _mutations(filters: Filters) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for direction, modifier in (("request", filters.request_headers),
                                ("response", filters.response_headers)):
        if modifier is None:
            continue
        out.update(header_mutations(direction, modifier))
    return out


def header_mutations(direction: str, modifier: HeaderModifier) -> dict[str, Any]:
    out: dict[str, Any] = {}
    adds = [{"header": {"key": name, "value": value},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for name, value in modifier.set]
    adds += [{"header": {"key": name, "value": value},
              "append_action": "APPEND_IF_EXISTS_OR_ADD"} for name, value in modifier.add]
    if adds:
        out[f"{direction}_headers_to_add"] = adds
    if modifier.remove:
        out[f"{direction}_headers_to_remove"] = [name.lower() for name in modifier.remove]
    return out


# ---- per-filter config (CORS, fault) ---------------------------------------------------------

def _per_filter(view: View, ctx: RuleContext, cors: Cors | None,
                policies: list[MeshObject | None], traffic: TrafficSettings,
                out: Compiled) -> dict[str, Any]:
    found: dict[str, Any] = {}
    policy_cors = None
    for policy in route_policies(view, ctx.route, None, ctx.gateway, ctx.listener, kind=SP):
        if policy is not None and policy.spec.cors is not None:
            policy_cors = policy.spec.cors
            break
    if cors is not None:
        found[CORS_FILTER] = route_cors(cors)
    elif policy_cors is not None:
        found[CORS_FILTER] = policy_cors_config(policy_cors)
    route_fault = merge([*policies]).fault  # a Service's fault is applied where it serves
    if route_fault is not None:
        found[FAULT_FILTER] = fault_config(route_fault)
    out.features.update(found)
    return found


def route_cors(cors: Cors) -> dict[str, Any]:
    """HTTPCORSFilter -> CorsPolicy (envoy.extensions.filters.http.cors.v3). A preflight from
    an origin not allowed is answered, not forwarded: "If the request Origin does not match
    the configured allowed origins, the gateway returns 204/200 response but doesn't set the
    relevant cross-origin response headers" (httproute_types.go, HTTPCORSFilter.AllowOrigins;
    the conformance suite's HTTPRouteCORS checks it)."""
    body: dict[str, Any] = {"@type": CORS_POLICY,
                            "allow_origin_string_match": [_origin(item)
                                                          for item in cors.allow_origins],
                            "forward_not_matching_preflights": False}
    if cors.allow_methods:
        body["allow_methods"] = ",".join(cors.allow_methods)
    if cors.allow_headers:
        body["allow_headers"] = ",".join(cors.allow_headers)
    if cors.expose_headers:
        body["expose_headers"] = ",".join(cors.expose_headers)
    body["max_age"] = str(cors.max_age)
    if cors.allow_credentials:
        body["allow_credentials"] = True
    return body


def policy_cors_config(cors: CorsPolicy) -> dict[str, Any]:
    body: dict[str, Any] = {"@type": CORS_POLICY,
                            "allow_origin_string_match": [_origin(item)
                                                          for item in cors.allow_origins]}
    for key, values in (("allow_methods", cors.allow_methods),
                        ("allow_headers", cors.allow_headers),
                        ("expose_headers", cors.expose_headers)):
        if values:
            body[key] = ",".join(values)
    if cors.max_age is not None:
        body["max_age"] = str(int(cors.max_age))
    if cors.allow_credentials:
        body["allow_credentials"] = True
    return body


def _origin(origin: str) -> dict[str, Any]:
    if origin == "*":
        return {"safe_regex": {"regex": ".*"}}
    if "*" in origin:
        pattern = re.escape(origin).replace(r"\*", "[^/]*")
        return {"safe_regex": {"regex": pattern}}
    return {"exact": origin}


def fault_config(fault: FaultInjection) -> dict[str, Any]:
    """Envoy Gateway's faultInjection -> HTTPFault (percentages per million)."""
    body: dict[str, Any] = {"@type": FAULT}
    if fault.delay is not None:
        body["delay"] = {"fixed_delay": seconds(fault.delay),
                         "percentage": _percent(fault.delay_percent)}
    if fault.abort_http_status is not None or fault.abort_grpc_status is not None:
        abort: dict[str, Any] = {"percentage": _percent(fault.abort_percent)}
        if fault.abort_http_status is not None:
            abort["http_status"] = fault.abort_http_status
        else:
            abort["grpc_status"] = fault.abort_grpc_status
        body["abort"] = abort
    return body


def _percent(value: float) -> dict[str, Any]:
    return {"numerator": round(value * 10_000), "denominator": "MILLION"}


def sorted_routes(compiled: list[Compiled]) -> Iterator[dict[str, Any]]:
    entries = [entry for item in compiled for entry in item.entries]
    entries.sort(key=lambda entry: entry[0])
    for _, route in entries:
        yield route
