"""What the router fixes before a forwarded request's first attempt (Envoy router.cc
decodeHeaders): the cluster (cluster, cluster_header or a weighted pick), the upstream request
head (path and host rewrites, x-envoy-original-*, the timeout headers, the route's header
mutations), the route timeout, the hash key for consistent balancing, and the mirror policies
drawn for this request. A pure function of the stream, the route and the cluster manager's
current view (and one random draw for weighted clusters).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from proxy.codec.headers import RequestHead
from proxy.http.deadline import Deadline
from proxy.http.filter import HttpStream, LocalReply
from proxy.http.hashing import compute_hash
from proxy.http.header_mutation import apply_request_mutations, ordered_levels, route_levels
from proxy.http.retry import grpc_timeout_text, parse_grpc_timeout
from proxy.http.routing import CLUSTER_PICK, select_cluster
from proxy.http.shadow import ShadowWriter
from proxy.model.header_mutation import HeaderMutations
from proxy.model.route import (
    ForwardAction,
    MirrorPolicy,
    RegexRewrite,
    RetryPolicy,
    Route,
    RouteConfig,
    WeightedClusterEntry,
)


@dataclass(slots=True)
class ForwardPlan:
    """Everything fixed before the first attempt."""

    action: ForwardAction
    runtime: Any  # the cluster's proxy.upstream.cluster.ClusterRuntime
    head: RequestHead  # what every attempt sends (each may add its own headers to a copy)
    hash_key: int | None
    set_cookie: str | None
    timeout: float | None  # the route timeout (None: none)
    response_levels: list[HeaderMutations]
    retry_policy: RetryPolicy | None = None  # the route's, else the virtual host's
    suppress_envoy_headers: bool = False  # the router's config
    # The route timeout while it waits for the end of the request to start (router._forward).
    route_timer: Deadline | None = None
    mirrors: list[MirrorPolicy] | None = None  # the mirror policies drawn for this request

    @property
    def per_try_timeout(self) -> float | None:
        return self.retry_policy.per_try_timeout if self.retry_policy is not None else None


@dataclass(frozen=True, slots=True)
class Planner:
    """The router's parts a plan needs."""

    cluster_manager: Any
    rng: random.Random
    suppress_envoy_headers: bool
    shadow_writer: ShadowWriter

    def plan(self, stream: HttpStream, config: RouteConfig,
             action: ForwardAction) -> ForwardPlan | LocalReply:
        """The plan, or the local reply when the cluster does not exist (NC)."""
        picked = self._cluster(stream, action)
        cluster_name, entry = picked
        runtime = self.cluster_manager.get(cluster_name) if cluster_name else None
        stream.upstream_cluster = cluster_name
        if runtime is None:
            stream.set_flag("NC")
            return LocalReply(action.cluster_not_found_response_code,
                              details="cluster_not_found")
        levels = _mutation_levels(stream, config, entry)
        head = upstream_head(stream.request, _route(stream), action,
                             entry.host_rewrite_literal if entry else "",
                             self.suppress_envoy_headers)
        timeout = self._timeouts(stream, action, head)
        apply_request_mutations(head.headers, levels, stream)
        plan = ForwardPlan(action, runtime, head, None, None, timeout, levels,
                           _retry_policy(stream, action), self.suppress_envoy_headers)
        if action.hash_policies:
            hashed = compute_hash(action.hash_policies, stream.request,
                                  stream.trusted_client_address,
                                  address_text(stream.remote_address))
            plan.hash_key, plan.set_cookie = hashed.key, hashed.set_cookie
        # mirror_policies() inline: route, else virtual host, else route configuration.
        vhost = stream.virtual_host
        policies = action.mirror_policies or (vhost.mirror_policies if vhost else ()) \
            or config.mirror_policies
        if policies:  # Envoy draws them in decodeHeaders, before the first attempt
            plan.mirrors = self.shadow_writer.active_policies(policies, head)
        return plan

    def _cluster(self, stream: HttpStream,
                 action: ForwardAction) -> tuple[str, WeightedClusterEntry | None]:
        """The random value matters only for weighted_clusters: drawn only then, unless a
        filter already asked for the route's cluster (routing.route_cluster)."""
        if action.cluster:
            return action.cluster, None
        picked: tuple[str, WeightedClusterEntry | None] = stream.state.get(CLUSTER_PICK) \
            or select_cluster(action, stream.request, self.rng.randrange(1 << 30))
        return picked

    def _timeouts(self, stream: HttpStream, action: ForwardAction,
                  head: RequestHead) -> float | None:
        """The route timeout. Envoy's FilterUtility::finalTimeout, before the route's header
        mutations: the upstream learns the timeout it has (the per-try one first) in
        x-envoy-expected-rq-timeout-ms and, under max_grpc_timeout, in a rewritten
        grpc-timeout."""
        grpc_timeout = action.max_grpc_timeout is not None and stream.request.is_grpc()
        timeout = global_grpc_timeout(action, stream.request) if grpc_timeout \
            else action.timeout or None
        per_try = action.retry_policy.per_try_timeout if action.retry_policy else None
        expected = per_try or timeout
        if expected:
            if not self.suppress_envoy_headers:
                head.headers.set("x-envoy-expected-rq-timeout-ms", milliseconds_text(expected))
            if grpc_timeout:
                head.headers.set("grpc-timeout", grpc_timeout_text(expected))
        return timeout


def _route(stream: HttpStream) -> Route:
    assert stream.route is not None
    return stream.route


def _retry_policy(stream: HttpStream, action: ForwardAction) -> RetryPolicy | None:
    if action.retry_policy is None and stream.virtual_host is not None:
        return stream.virtual_host.retry_policy
    return action.retry_policy


def _mutation_levels(stream: HttpStream, config: RouteConfig,
                     entry: WeightedClusterEntry | None) -> list[HeaderMutations]:
    route, vhost = stream.route, stream.virtual_host
    assert route is not None and vhost is not None
    if entry is None:
        return route_levels(config, vhost, route)
    # A weighted cluster's own mutations are the most specific level.
    return ordered_levels([entry.mutations, route.mutations, vhost.mutations, config.mutations],
                          config.most_specific_header_mutations_wins)


def global_grpc_timeout(action: ForwardAction, request: RequestHead) -> float | None:
    """A gRPC request's timeout under max_grpc_timeout (None: none), as Envoy 1.40 computes
    it (FilterUtility::finalTimeout, checked in tests/conformance/proxy/http): the grpc-timeout
    header, none or 0 meaning infinity; grpc_timeout_offset subtracted only when smaller than
    it; then capped at max_grpc_timeout unless that is 0. The route `timeout` is not used."""
    grpc = parse_grpc_timeout(request.headers.get("grpc-timeout")) or 0.0
    offset = action.grpc_timeout_offset
    if offset and offset < grpc:
        grpc -= offset
    cap = action.max_grpc_timeout or 0.0
    if cap and (not grpc or grpc > cap):
        grpc = cap
    return grpc or None


_MS_TEXT: dict[float, str] = {}


def milliseconds_text(seconds: float) -> str:
    """Whole milliseconds as text, remembered per configured timeout (a handful)."""
    text = _MS_TEXT.get(seconds)
    if text is None:
        text = str(int(seconds * 1000))
        if len(_MS_TEXT) < 256:  # grpc-timeout values come from clients
            _MS_TEXT[seconds] = text
    return text


def address_text(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def _matched_prefix_length(route: Route) -> int | None:
    """How much of the path prefix_rewrite replaces: the matched prefix or path."""
    if route.match.path_kind in ("prefix", "path", "path_separated_prefix"):
        return len(route.match.path)
    return None


def rewrite_path(path: str, route: Route, prefix_rewrite: str | None,
                 regex_rewrite: RegexRewrite | None) -> str:
    only, sep, query = path.partition("?")
    length = _matched_prefix_length(route)
    if prefix_rewrite is not None and length is not None:
        return prefix_rewrite + path[length:]
    if regex_rewrite is not None:
        return regex_rewrite.apply(only) + sep + query
    return path


def upstream_head(request: RequestHead, route: Route, action: ForwardAction,
                  entry_host_rewrite: str, suppress_envoy_headers: bool) -> RequestHead:
    """The request head as the route sends it: path and host rewritten (Envoy keeps the
    originals in x-envoy-original-path / -host unless suppressed)."""
    path = rewrite_path(request.path, route, action.prefix_rewrite, action.regex_rewrite)
    headers = request.headers.copy()
    if path != request.path and not suppress_envoy_headers:
        headers.set("x-envoy-original-path", request.path)
    authority = entry_host_rewrite or action.host_rewrite_literal or request.authority
    if action.host_rewrite_header:
        authority = request.headers.get(action.host_rewrite_header) or authority
    if authority != request.authority and not suppress_envoy_headers:
        headers.set("x-envoy-original-host", request.authority)
    return RequestHead(method=request.method, path=path, authority=authority,
                       scheme=request.scheme, headers=headers, protocol=request.protocol,
                       upgrade=request.upgrade)
