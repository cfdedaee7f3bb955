"""`gateway.networking.k8s.io/v1 HTTPRoute` (apis/v1 httproute_types.go): matches on path
(Exact, PathPrefix, RegularExpression), headers, query parameters and method; filters
(controlplane.mesh.kinds.filters); weighted backendRefs with their own header filters;
timeouts (request, backendRequest), retry (GEP-1731) and sessionPersistence (GEP-1619).
Regular expressions are Python's `re` syntax, the dialect the Pointsman sidecar matches with
(RE2, Envoy's, is close; `(?i)` works in both)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from controlplane.mesh.fields import HEADER_NAME, Fields, Item
from controlplane.mesh.kinds.filters import (
    HTTP_FILTERS,
    Filters,
    SessionPersistence,
    parse_filters,
    parse_session_persistence,
)
from controlplane.mesh.kinds.refs import BackendRef, ParentRef, parse_backend_ref
from controlplane.mesh.kinds.routes import (
    check_rule_names,
    parse_backends,
    parse_hostnames,
    parse_parents,
    rule_name,
)

PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
MAX_MATCHES = 128


@dataclass(frozen=True)
class PathMatch:
    kind: str = "PathPrefix"  # Exact | PathPrefix | RegularExpression
    value: str = "/"


@dataclass(frozen=True)
class ValueMatch:
    """A header or query parameter match."""

    kind: str  # Exact | RegularExpression
    name: str
    value: str


@dataclass(frozen=True)
class HttpMatch:
    path: PathMatch = field(default_factory=PathMatch)
    headers: tuple[ValueMatch, ...] = ()
    query: tuple[ValueMatch, ...] = ()
    method: str | None = None
    index: int = 0


@dataclass(frozen=True)
class Timeouts:
    request: float | None = None  # seconds; 0 disables
    backend_request: float | None = None


@dataclass(frozen=True)
class Retry:
    codes: tuple[int, ...] = ()
    attempts: int | None = None
    backoff: float | None = None


@dataclass(frozen=True)
class HttpRule:
    name: str | None
    matches: tuple[HttpMatch, ...]
    filters: Filters
    backends: tuple[BackendRef, ...]
    timeouts: Timeouts | None
    retry: Retry | None
    session: SessionPersistence | None
    index: int


@dataclass(frozen=True)
class HttpRouteSpec:
    parents: tuple[ParentRef, ...]
    hostnames: tuple[str, ...]
    rules: tuple[HttpRule, ...]


def parse_httproute_spec(fields: Fields) -> HttpRouteSpec:
    parents = parse_parents(fields)
    hostnames = parse_hostnames(fields)
    rules = fields.items("rules", _rule, max_items=16)
    if not rules:  # the CRD's default: one rule matching every request, no backends
        rules = (HttpRule(None, (HttpMatch(),), Filters(), (), None, None, None, 0),)
    check_rule_names(fields, [rule.name for rule in rules])
    total = sum(len(rule.matches) for rule in rules)
    if total > MAX_MATCHES:
        raise fields.error("rules", f"the total number of matches across all rules in a route "
                                    f"must be at most {MAX_MATCHES} (has {total})")
    fields.done(unsupported=("useDefaultGateways",))
    return HttpRouteSpec(parents, hostnames, rules)


def _rule(item: Item) -> HttpRule:
    def parse(fields: Fields) -> HttpRule:
        matches = fields.items("matches", _match, max_items=64) or (HttpMatch(),)
        filters = parse_filters(fields, "filters", HTTP_FILTERS)
        backends = parse_backends(fields, _backend)
        if filters.redirect is not None and backends:
            raise fields.error("filters", "RequestRedirect filter must not be used together "
                                          "with backendRefs")
        filters, backends = _hoist_backend_filters(fields, filters, backends)
        _check_prefix_rewrites(fields, filters, matches)
        timeouts = fields.obj("timeouts", _timeouts)
        return HttpRule(rule_name(fields), matches, filters, backends, timeouts,
                        fields.obj("retry", _retry),
                        fields.obj("sessionPersistence", parse_session_persistence), item.index)
    return item.obj(parse)


def _backend(fields: Fields) -> BackendRef:
    ref = parse_backend_ref(fields)
    filters = parse_filters(fields, "filters", ("RequestHeaderModifier",
                                                "ResponseHeaderModifier", "URLRewrite",
                                                "RequestRedirect"))
    return BackendRef(ref.group, ref.kind, ref.name, ref.namespace, ref.port, ref.weight,
                      (filters,))


def _hoist_backend_filters(fields: Fields, filters: Filters, backends: tuple[BackendRef, ...]
                           ) -> tuple[Filters, tuple[BackendRef, ...]]:
    """URLRewrite and RequestRedirect on a backendRef (HTTPBackendRef.Filters: "Support:
    Implementation-specific" for these; HTTPRouteBackendURLRewrite and ...RequestRedirect in
    the conformance suite). With one backendRef, the rule's requests all go to it, so the
    filter is the rule's: served as the rule's rewrite or redirect. With several, Envoy's
    weighted clusters cannot rewrite or redirect per cluster: refused, not ignored."""
    found = [(index, ref.filters[0]) for index, ref in enumerate(backends)
             if ref.filters and isinstance(ref.filters[0], Filters)
             and (ref.filters[0].rewrite is not None or ref.filters[0].redirect is not None)]
    if not found:
        return filters, backends
    index, own = found[0]
    path = (*fields.path, "backendRefs", index, "filters")
    if len(backends) != 1:
        raise fields.context.error(path, "URLRewrite and RequestRedirect on a backendRef are "
                                         "supported when the rule has that one backendRef "
                                         "(Envoy cannot rewrite per weighted cluster)")
    if (own.rewrite is not None and (filters.rewrite or filters.redirect)) or (
            own.redirect is not None and filters.rewrite):
        raise fields.context.error(path, "the rule has its own URLRewrite or RequestRedirect: "
                                         "only one of them can apply")
    merged = replace(filters, rewrite=own.rewrite or filters.rewrite,
                     redirect=own.redirect or filters.redirect)
    ref = backends[0]
    kept = replace(ref, filters=(replace(own, rewrite=None, redirect=None),))
    return merged, (kept,)


def _check_prefix_rewrites(fields: Fields, filters: Filters, matches: tuple[HttpMatch, ...]
                           ) -> None:
    for name, action in (("RequestRedirect", filters.redirect), ("URLRewrite", filters.rewrite)):
        path = getattr(action, "path", None)
        if path is not None and path.kind == "ReplacePrefixMatch" and (
                len(matches) != 1 or matches[0].path.kind != "PathPrefix"):
            raise fields.error("filters", f"When using {name} filter with "
                                          "path.replacePrefixMatch, exactly one PathPrefix "
                                          "match must be specified")


def _match(item: Item) -> HttpMatch:
    def parse(fields: Fields) -> HttpMatch:
        path = fields.obj("path", _path) or PathMatch()
        headers = _first_of_each(fields.obj_list("headers", _value_match, max_items=16),
                                 lower=True)
        query = _first_of_each(fields.obj_list("queryParams", _value_match, max_items=16),
                               lower=False)
        method = fields.text("method", enum=METHODS)
        return HttpMatch(path, headers, query, method, item.index)
    return item.obj(parse)


def _first_of_each(matches: tuple[ValueMatch, ...], *, lower: bool) -> tuple[ValueMatch, ...]:
    """"If multiple entries specify equivalent names, only the first entry with an equivalent
    name MUST be considered for a match" (HTTPHeaderMatch.Name, HTTPQueryParamMatch.Name)."""
    seen: set[str] = set()
    kept = []
    for match in matches:
        key = match.name.lower() if lower else match.name
        if key not in seen:
            seen.add(key)
            kept.append(match)
    return tuple(kept)


def _path(fields: Fields) -> PathMatch:
    kind = fields.text("type", default="PathPrefix",
                      enum=("Exact", "PathPrefix", "RegularExpression")) or "PathPrefix"
    value = fields.text("value", default="/", max_len=1024) or "/"
    if kind == "RegularExpression":
        _compile(fields, "value", value)
        return PathMatch(kind, value)
    for rule, bad in (("must start with '/'", not value.startswith("/")),
                      ("must not contain '//'", "//" in value),
                      ("must not contain '/./'", "/./" in value),
                      ("must not contain '/../'", "/../" in value),
                      ("must not contain '%2f' or '%2F'", "%2f" in value.lower()),
                      ("must not contain '#'", "#" in value),
                      ("must not end with '/..' or '/.'", value.endswith(("/..", "/.")))):
        if bad:
            raise fields.error("value", f"{rule} when type is {kind}")
    if not PATH_CHARS.match(value):
        raise fields.error("value", f"invalid characters in path {value!r}")
    return PathMatch(kind, value)


def _value_match(fields: Fields) -> ValueMatch:
    kind = fields.text("type", default="Exact", enum=("Exact", "RegularExpression")) or "Exact"
    name = fields.req_str("name", min_len=1, max_len=256, pattern=HEADER_NAME)
    value = fields.req_str("value", max_len=4096)
    if kind == "RegularExpression":
        _compile(fields, "value", value)
    return ValueMatch(kind, name, value)


def _compile(fields: Fields, key: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as error:
        raise fields.error(key, f"invalid regular expression: {error}") from error


def _timeouts(fields: Fields) -> Timeouts:
    request = fields.duration("request")
    backend = fields.duration("backendRequest")
    if request and backend is not None and backend > request:
        raise fields.error("backendRequest", "backendRequest timeout cannot be longer than "
                                             "request timeout")
    return Timeouts(request, backend)


def _retry(fields: Fields) -> Retry:
    codes = fields.items("codes", lambda item: item.integer(400, 599))
    return Retry(codes, fields.integer("attempts", minimum=0), fields.duration("backoff"))
