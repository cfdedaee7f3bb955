"""Route selection: a pure function of the model and the request head (Envoy `route_matcher`).

1. Virtual host by `:authority` (lower-cased; port dropped when ignore_port_in_host_matching):
   exact domain, then the longest `*suffix`, then the longest `prefix*`, then `*`
   (route_components.proto, VirtualHost.domains). A wildcard never matches the empty string.
2. The first route whose match accepts the request (routes are ordered).
3. For a forward action, the cluster: `cluster`, the value of `cluster_header`, or a weighted
   pick driven by a caller-supplied random value (so tests can be exact).

`resolve_route` does 1 and 2 for a stream once (Envoy's cached route), for the filters that
ask and for the router; `per_filter_configs` finds a filter's per-route configs there.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from proxy.codec.headers import RequestHead
from proxy.model.matchers import HeaderMatcher, QueryParameterMatcher
from proxy.model.route import (
    ForwardAction,
    Route,
    RouteConfig,
    RouteMatch,
    VirtualHost,
    WeightedClusterEntry,
    per_filter_config,
)

if TYPE_CHECKING:
    from proxy.http.filter import HttpStream


def resolve_route(stream: HttpStream) -> Route | None:
    """The stream's route as the request is now, looked up once (Envoy's
    `decoder_callbacks_->route()` caches it): a filter that asks sees the route the router
    will use. Sets `virtual_host` and `route` on the stream."""
    if not stream.route_resolved:
        stream.route_resolved = True
        config = stream.route_config
        if config is not None:
            vhost = select_virtual_host(config, stream.request.authority)
            stream.virtual_host = vhost
            if vhost is not None:
                stream.route = match_route(vhost, stream.request)
    return stream.route


def per_filter_configs(stream: HttpStream, name: str, extension: str = "") -> list[Any]:
    """The per-route configs filed under filter `name` for the stream's route, most specific
    first: route, virtual host, route configuration (Envoy's getAllPerFilterConfig, reversed).
    When none is filed under `name`, those filed under the filter's `extension` name
    (Envoy's FilterManager falls back to the factory's name). None without a route: Envoy
    looks per-route configs up through the route."""
    route = resolve_route(stream)
    if route is None:
        return []
    levels = (route.per_filter,
              stream.virtual_host.per_filter if stream.virtual_host is not None else (),
              stream.route_config.per_filter if stream.route_config is not None else ())
    for key in (name, extension) if extension and extension != name else (name,):
        found = [config for config in (per_filter_config(level, key) for level in levels)
                 if config is not None]
        if found:
            return found
    return []


def select_virtual_host(config: RouteConfig, authority: str) -> VirtualHost | None:
    host = authority.lower()
    if config.ignore_port_in_host_matching:
        host = strip_port(host)
    index = config.lookup_cache.get("hosts")
    if index is None:
        index = config.lookup_cache["hosts"] = _HostIndex(config.virtual_hosts)
    return index.find(host)


class _HostIndex:
    """VirtualHost.domains in Envoy's search order, built once per route configuration: a map
    of exact names, then wildcard suffixes and prefixes longest first (config order among
    equals), then `*`. A mesh sidecar's outbound configuration has a virtual host per service,
    so this is a map look-up, not a scan of every domain per request."""

    MEMO_LIMIT = 1024  # hosts come from clients: bound what is remembered

    def __init__(self, virtual_hosts: tuple[VirtualHost, ...]) -> None:
        self.exact: dict[str, VirtualHost] = {}
        suffixes: list[tuple[str, VirtualHost]] = []
        prefixes: list[tuple[str, VirtualHost]] = []
        self.star: VirtualHost | None = None
        for vhost in virtual_hosts:
            for domain in vhost.domains:
                if domain == "*":
                    self.star = self.star or vhost
                elif domain.startswith("*"):
                    suffixes.append((domain[1:], vhost))
                elif domain.endswith("*"):
                    prefixes.append((domain[:-1], vhost))
                else:
                    self.exact.setdefault(domain, vhost)
        # sorted() is stable: among equal lengths the first in the configuration wins.
        self.suffixes = sorted(suffixes, key=lambda item: -len(item[0]))
        self.prefixes = sorted(prefixes, key=lambda item: -len(item[0]))
        self.memo: dict[str, VirtualHost | None] = {}

    def find(self, host: str) -> VirtualHost | None:
        if host in self.memo:
            return self.memo[host]
        found = self._search(host)
        if len(self.memo) >= self.MEMO_LIMIT:
            self.memo.clear()
        self.memo[host] = found
        return found

    def _search(self, host: str) -> VirtualHost | None:
        found = self.exact.get(host)
        if found is not None:
            return found
        for suffix, vhost in self.suffixes:  # a wildcard never matches the empty string
            if len(host) > len(suffix) and host.endswith(suffix):
                return vhost
        for prefix, vhost in self.prefixes:
            if len(host) > len(prefix) and host.startswith(prefix):
                return vhost
        return self.star


def strip_port(host: str) -> str:
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def match_route(vhost: VirtualHost, request: RequestHead) -> Route | None:
    for route in vhost.routes:
        if route_matches(route.match, request):
            return route
    return None


def route_matches(match: RouteMatch, request: RequestHead) -> bool:
    return (
        _path_matches(match, request)
        and (not match.grpc or request.is_grpc())
        and all(header_matches(h, request) for h in match.headers)
        and _query_matches(match.query_parameters, request.query)
    )


def _path_matches(match: RouteMatch, request: RequestHead) -> bool:
    if match.path_kind == "connect":
        return request.method == "CONNECT"
    if request.method == "CONNECT" and not request.path:
        return False  # an HTTP/1.1 CONNECT has no path: only connect_matcher matches it
    if match.path_kind == "regex":
        assert match.pattern is not None
        return match.pattern.fullmatch(_without_fragment(request.path_only)) is not None
    # Prefix matching runs on the whole :path (query included), as Envoy's prefix matcher does;
    # exact and separated-prefix matches drop the query string first.
    if match.path_kind == "prefix":
        candidate, wanted = request.path, match.path
    else:
        candidate, wanted = _without_fragment(request.path_only), match.path
    if not match.case_sensitive:
        candidate, wanted = candidate.lower(), wanted.lower()
    if match.path_kind == "prefix":
        return candidate.startswith(wanted)
    if match.path_kind == "path":
        return candidate == wanted
    return candidate == wanted or candidate.startswith(wanted + "/")


def _without_fragment(path: str) -> str:
    return path.split("#", 1)[0]


class HeaderSource(Protocol):
    def header(self, name: str) -> str | None: ...


def header_matches(matcher: HeaderMatcher, request: HeaderSource) -> bool:
    """RouteMatch.headers on a request; also RetryPolicy.retriable_headers on a response
    (proxy.http.router.ResponseHeaders)."""
    found = request.header(matcher.name)
    if found is None:
        if matcher.present is not None:
            return (not matcher.present) != matcher.invert
        if not matcher.treat_missing_as_empty:
            return False
        found = ""
    value = found
    if matcher.present is not None:
        result = matcher.present
    elif matcher.int_range is not None:
        result = _in_range(value, matcher.int_range)
    else:
        assert matcher.string is not None
        result = matcher.string.matches(value)
    return result != matcher.invert


def _in_range(value: str, bounds: tuple[int, int]) -> bool:
    try:
        number = int(value)
    except ValueError:
        return False
    return bounds[0] <= number < bounds[1]


def _query_matches(matchers: tuple[QueryParameterMatcher, ...], query: str) -> bool:
    if not matchers:
        return True
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(key, value)  # the first occurrence wins, as in Envoy
    for matcher in matchers:
        param = params.get(matcher.name)
        if param is None:
            return False
        if matcher.string is not None and not matcher.string.matches(param):
            return False
    return True


def select_cluster(action: ForwardAction, request: RequestHead,
                   random_value: int) -> tuple[str, WeightedClusterEntry | None]:
    """The cluster name ("" when a cluster_header is absent) and the weighted entry if any."""
    if action.cluster:
        return action.cluster, None
    if action.cluster_header:
        return request.headers.get(action.cluster_header) or "", None
    target = random_value % action.total_weight
    for entry in action.weighted_clusters:
        if target < entry.weight:
            name = entry.name or request.headers.get(entry.cluster_header) or ""
            return name, entry
        target -= entry.weight
    raise AssertionError("weights sum to total_weight")


CLUSTER_PICK = "cluster_pick"  # HttpStream.state key of a weighted pick made before the router


def route_cluster(stream: HttpStream) -> str:
    """The cluster of the stream's route as Envoy's routeEntry()->clusterName() gives it to a
    filter ("" for no route or one that does not forward). A weighted pick made here is kept
    in the stream's state, and the router forwards to that cluster (Envoy picks once, when
    the route is looked up)."""
    route = resolve_route(stream)
    if route is None or not isinstance(route.action, ForwardAction):
        return ""
    action = route.action
    if not action.weighted_clusters:
        return select_cluster(action, stream.request, 0)[0]
    picked = stream.state.get(CLUSTER_PICK)
    if picked is None:
        picked = stream.state[CLUSTER_PICK] = select_cluster(
            action, stream.request, random.randrange(1 << 30))
    name: str = picked[0]
    return name
