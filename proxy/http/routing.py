"""Route selection: a pure function of the model and the request head (Envoy `route_matcher`).

1. Virtual host by `:authority` (lower-cased; port dropped when ignore_port_in_host_matching):
   exact domain, then the longest `*suffix`, then the longest `prefix*`, then `*`
   (route_components.proto, VirtualHost.domains). A wildcard never matches the empty string.
2. The first route whose match accepts the request (routes are ordered).
3. For a forward action, the cluster: `cluster`, the value of `cluster_header`, or a weighted
   pick driven by a caller-supplied random value (so tests can be exact).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from proxy.http.headers import RequestHead
from proxy.http.matchers import HeaderMatcher, QueryParameterMatcher
from proxy.model.route import (
    ForwardAction,
    Route,
    RouteConfig,
    RouteMatch,
    VirtualHost,
    WeightedClusterEntry,
)


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


def header_matches(matcher: HeaderMatcher, request: RequestHead) -> bool:
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
