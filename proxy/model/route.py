"""RouteConfiguration -> a frozen routing model (Envoy `config/route/v3/route_components.proto`).

Translated once, at the config boundary: every field that would change behaviour and that we do
not implement is refused by name (`protos.errors.unsupported`), never ignored. Matching over this
model is a pure function in `proxy.http.routing`; the router in `proxy.http.router` executes the
actions. The model imports nothing above it (proxy.model, proxy.codec).

`typed_per_filter_config` (route, virtual host, route configuration) is translated by the HTTP
filter whose per-route type the entry has (registered in `proxy.model.extensions` by the
filter's package), as Envoy finds the factory by the type URL; an entry of a type no filter of
ours takes is refused naming it. `request_mirror_policies` (route, else virtual host, else
route configuration, as Envoy inherits them) are executed by `proxy.http.shadow`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.model.extensions import per_route_translator
from proxy.model.fields import reject_unsupported
from proxy.model.header_mutation import HeaderMutations, translate_mutations
from proxy.model.matchers import (
    HeaderMatcher,
    QueryParameterMatcher,
    translate_header_matcher,
    translate_query_matcher,
    translate_regex,
)

# Envoy's default route timeout (route_components.proto, RouteAction.timeout: "defaults to 15s").
DEFAULT_ROUTE_TIMEOUT = 15.0

PathKind = Literal["prefix", "path", "regex", "path_separated_prefix", "connect"]


@dataclass(frozen=True)
class RouteMatch:
    path_kind: PathKind
    path: str = ""
    pattern: re.Pattern[str] | None = None
    case_sensitive: bool = True
    headers: tuple[HeaderMatcher, ...] = ()
    query_parameters: tuple[QueryParameterMatcher, ...] = ()
    grpc: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    retry_on: frozenset[str]
    num_retries: int = 1
    per_try_timeout: float | None = None
    retriable_status_codes: frozenset[int] = frozenset()
    backoff_base: float = 0.025  # Envoy: 25 ms base, max 10x base (router.md "x-envoy-max-...")
    backoff_max: float = 0.25
    avoid_previous_hosts: bool = False
    host_selection_retry_max_attempts: int = 1
    # retry_on "retriable-headers": a response carrying a header one of these match
    retriable_headers: tuple[HeaderMatcher, ...] = ()


@dataclass(frozen=True)
class HashPolicy:
    kind: Literal["header", "cookie", "source_ip", "query_parameter"]
    name: str = ""
    cookie_ttl: float | None = None  # set: the sidecar sets the cookie when absent
    cookie_path: str = ""
    terminal: bool = False


@dataclass(frozen=True)
class WeightedClusterEntry:
    name: str
    weight: int
    cluster_header: str = ""
    mutations: HeaderMutations = field(default_factory=HeaderMutations)
    host_rewrite_literal: str = ""


@dataclass(frozen=True)
class RegexRewrite:
    pattern: re.Pattern[str]
    substitution: str

    def apply(self, path: str) -> str:
        # Envoy's regex_rewrite substitutes every match; RE2 `\1` groups map to Python's.
        return self.pattern.sub(self.substitution, path)


@dataclass(frozen=True)
class MirrorPolicy:
    """RouteAction.RequestMirrorPolicy: a copy of the request goes to `cluster` (or the cluster
    named by the request's `cluster_header`) for `numerator / denominator` of the requests; its
    answer is ignored (Envoy router.cc, shadow_writer_impl.cc)."""

    cluster: str = ""
    cluster_header: str = ""
    numerator: int = 100  # runtime_fraction.default_value; unset: every request
    denominator: int = 100
    trace_sampled: bool | None = None  # None: the request's own sampling decision
    disable_shadow_host_suffix_append: bool = False
    host_rewrite_literal: str = ""


# typed_per_filter_config, translated: (filter name, per-route config) sorted by name.
PerFilterConfigs = tuple[tuple[str, Any], ...]


def per_filter_config(configs: PerFilterConfigs, name: str) -> Any | None:
    for key, config in configs:
        if key == name:
            return config
    return None


@dataclass(frozen=True)
class ForwardAction:
    """RouteAction: send the request to a cluster."""

    cluster: str = ""
    cluster_header: str = ""
    weighted_clusters: tuple[WeightedClusterEntry, ...] = ()
    total_weight: int = 0
    cluster_not_found_response_code: int = 503
    prefix_rewrite: str | None = None
    regex_rewrite: RegexRewrite | None = None
    host_rewrite_literal: str = ""
    auto_host_rewrite: bool = False
    host_rewrite_header: str = ""
    timeout: float = DEFAULT_ROUTE_TIMEOUT  # 0 disables
    idle_timeout: float | None = None
    retry_policy: RetryPolicy | None = None
    hash_policies: tuple[HashPolicy, ...] = ()
    max_grpc_timeout: float | None = None  # None: grpc-timeout ignored; 0: no maximum
    grpc_timeout_offset: float = 0.0
    upgrades: frozenset[str] = frozenset()  # "websocket", "connect"
    # Types the route's upgrade_configs turn off (enabled: false): they override the HCM.
    upgrades_disabled: frozenset[str] = frozenset()
    mirror_policies: tuple[MirrorPolicy, ...] = ()  # the route's own (see mirror_policies())
    cors: Any = None  # the deprecated RouteAction.cors (proxy.http.filters.cors.CorsPolicy)


@dataclass(frozen=True)
class RedirectAction:
    scheme: str = ""
    host: str = ""
    port: int = 0
    path: str = ""
    prefix_rewrite: str | None = None
    regex_rewrite: RegexRewrite | None = None
    response_code: int = 301
    strip_query: bool = False


@dataclass(frozen=True)
class DirectResponseAction:
    status: int
    body: bytes = b""


Action = ForwardAction | RedirectAction | DirectResponseAction


@dataclass(frozen=True)
class Route:
    name: str
    match: RouteMatch
    action: Action
    mutations: HeaderMutations = field(default_factory=HeaderMutations)
    decorator: Decorator | None = None
    per_request_buffer_limit_bytes: int | None = None  # see request_buffer_limit()
    per_filter: PerFilterConfigs = ()  # typed_per_filter_config


@dataclass(frozen=True)
class Decorator:
    """Route.decorator (route_components.proto): with tracing on, `operation` names the
    SERVER span and, when `propagate` (default true), goes back to the downstream in
    x-envoy-decorator-operation (Envoy, ingress)."""

    operation: str
    propagate: bool = True


@dataclass(frozen=True)
class VirtualHost:
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]
    mutations: HeaderMutations = field(default_factory=HeaderMutations)
    retry_policy: RetryPolicy | None = None
    per_request_buffer_limit_bytes: int | None = None  # see request_buffer_limit()
    per_filter: PerFilterConfigs = ()  # typed_per_filter_config
    mirror_policies: tuple[MirrorPolicy, ...] = ()
    cors: Any = None  # the deprecated VirtualHost.cors (proxy.http.filters.cors.CorsPolicy)


def mirror_policies(action: ForwardAction, vhost: VirtualHost | None,
                    config: RouteConfig | None) -> tuple[MirrorPolicy, ...]:
    """The request mirror policies a route applies: its own, else its virtual host's, else
    the route configuration's (Envoy's RouteEntryImplBase inherits them that way)."""
    if action.mirror_policies:
        return action.mirror_policies
    if vhost is not None and vhost.mirror_policies:
        return vhost.mirror_policies
    return config.mirror_policies if config is not None else ()


def request_buffer_limit(route: Route | None, vhost: VirtualHost | None) -> int | None:
    """How much of one request's body may be buffered: the route's, else the virtual host's
    per_request_buffer_limit_bytes; None: the listener's per_connection_buffer_limit_bytes.
    Envoy 1.40 lets it replace the listener's limit either way (larger or smaller), both for
    the stream's buffers and for the body kept for retries (measured in
    tests/conformance/proxy/http/test_retry_buffer_vs_envoy.py)."""
    for level in (route, vhost):
        if level is not None and level.per_request_buffer_limit_bytes is not None:
            return level.per_request_buffer_limit_bytes
    return None


@dataclass(frozen=True)
class RouteConfig:
    name: str
    virtual_hosts: tuple[VirtualHost, ...]
    mutations: HeaderMutations = field(default_factory=HeaderMutations)
    internal_only_headers: tuple[str, ...] = ()
    most_specific_header_mutations_wins: bool = False
    ignore_port_in_host_matching: bool = False
    validate_clusters: bool | None = None  # None: Envoy's default (true when inline/static)
    per_filter: PerFilterConfigs = ()  # typed_per_filter_config
    mirror_policies: tuple[MirrorPolicy, ...] = ()
    # Look-up structures the router derives from this (immutable) configuration, built on
    # first use (proxy.http.routing); not part of its value.
    lookup_cache: dict[str, Any] = field(default_factory=dict, init=False, compare=False,
                                         hash=False, repr=False)

    def referenced_clusters(self) -> list[tuple[str, str]]:
        """(cluster name, field path) of every statically named cluster."""
        found = _mirrored_clusters(self.mirror_policies, "")
        for h, vhost in enumerate(self.virtual_hosts):
            found += _mirrored_clusters(vhost.mirror_policies, f"virtual_hosts[{h}].")
            for r, route in enumerate(vhost.routes):
                action = route.action
                where = f"virtual_hosts[{h}].routes[{r}].route"
                if isinstance(action, ForwardAction):
                    if action.cluster:
                        found.append((action.cluster, f"{where}.cluster"))
                    for w, entry in enumerate(action.weighted_clusters):
                        if entry.name:
                            found.append((entry.name,
                                          f"{where}.weighted_clusters.clusters[{w}].name"))
                    found += _mirrored_clusters(action.mirror_policies, f"{where}.")
        return found

    def refuse_unknown_clusters(self, known: Callable[[str], bool]) -> None:
        """RouteConfiguration.validate_clusters: a route naming a cluster that `known` does not
        know makes Envoy refuse the whole table ("unknown cluster")."""
        for name, where in self.referenced_clusters():
            if not known(name):
                raise ConfigError(f"unknown cluster {name!r}", field=where)


def _mirrored_clusters(policies: tuple[MirrorPolicy, ...], where: str) -> list[tuple[str, str]]:
    return [(policy.cluster, f"{where}request_mirror_policies[{index}].cluster")
            for index, policy in enumerate(policies) if policy.cluster]


# --- translation -------------------------------------------------------------------------------

_MUTATION_FIELDS = {
    "request_headers_to_add", "request_headers_to_remove",
    "response_headers_to_add", "response_headers_to_remove",
}
# Informational fields: they change neither routing nor what we report. (Route.stat_prefix
# is refused: it asks for vhost.<name>.route.<prefix>.* statistics we do not emit.)
_HARMLESS = {"name", "metadata"}


def _refuse_unknown(message: Message, supported: set[str]) -> None:
    """Reject every set field outside `supported` (and the harmless ones), naming it."""
    reject_unsupported(message, supported | _HARMLESS)


def _within(prefix: str, call, *args):  # type: ignore[no-untyped-def]
    try:
        return call(*args)
    except ConfigError as error:
        raise error.within(field=prefix) from error


def _seconds(duration: Message) -> float:
    return float(duration.seconds) + duration.nanos / 1e9  # type: ignore[attr-defined]


def translate_route_configuration(message: Message) -> RouteConfig:
    """envoy.config.route.v3.RouteConfiguration -> RouteConfig."""
    _refuse_unknown(message, _MUTATION_FIELDS | {
        "virtual_hosts", "internal_only_headers", "most_specific_header_mutations_wins",
        "ignore_port_in_host_matching", "max_direct_response_body_size_bytes",
        "validate_clusters", "typed_per_filter_config", "request_mirror_policies",
    })
    m = message
    hosts = tuple(
        _within(f"virtual_hosts[{i}]", translate_virtual_host, vh)
        for i, vh in enumerate(m.virtual_hosts)  # type: ignore[attr-defined]
    )
    _check_unique_domains(hosts)
    limit = 4096  # Envoy's default max_direct_response_body_size_bytes
    if m.HasField("max_direct_response_body_size_bytes"):
        limit = m.max_direct_response_body_size_bytes.value  # type: ignore[attr-defined]
    _check_direct_response_bodies(hosts, limit)
    return RouteConfig(
        name=m.name,  # type: ignore[attr-defined]
        virtual_hosts=hosts,
        mutations=translate_mutations(m),
        internal_only_headers=tuple(h.lower() for h in m.internal_only_headers),  # type: ignore
        most_specific_header_mutations_wins=m.most_specific_header_mutations_wins,  # type: ignore
        ignore_port_in_host_matching=m.ignore_port_in_host_matching,  # type: ignore
        validate_clusters=m.validate_clusters.value  # type: ignore[attr-defined]
        if m.HasField("validate_clusters") else None,  # type: ignore[attr-defined]
        per_filter=translate_per_filter_configs(m.typed_per_filter_config),  # type: ignore
        mirror_policies=_mirror_policies(m.request_mirror_policies),  # type: ignore
    )


# `translate_<type>` per docs/architecture.md.
translate_route = translate_route_configuration


def _check_direct_response_bodies(hosts: tuple[VirtualHost, ...], limit: int) -> None:
    """RouteConfiguration.max_direct_response_body_size_bytes (default 4096): Envoy refuses a
    route table with a larger direct_response body."""
    for i, host in enumerate(hosts):
        for j, route in enumerate(host.routes):
            action = route.action
            if isinstance(action, DirectResponseAction) and len(action.body) > limit:
                raise ConfigError(
                    f"direct_response body is {len(action.body)} bytes; the maximum is {limit}"
                    " (max_direct_response_body_size_bytes)",
                    field=f"virtual_hosts[{i}].routes[{j}].direct_response.body")


def _check_unique_domains(hosts: tuple[VirtualHost, ...]) -> None:
    # Envoy rejects a route configuration that lists one domain in two virtual hosts.
    seen: dict[str, str] = {}
    for index, host in enumerate(hosts):
        for domain in host.domains:
            if domain in seen:
                raise ConfigError(f"domain {domain!r} is in virtual hosts {seen[domain]!r} and "
                                  f"{host.name!r}", field=f"virtual_hosts[{index}].domains")
            seen[domain] = host.name


def translate_virtual_host(vh: Message) -> VirtualHost:
    _refuse_unknown(vh, _MUTATION_FIELDS | {"domains", "routes", "retry_policy",
                                            "per_request_buffer_limit_bytes",
                                            "typed_per_filter_config", "request_mirror_policies",
                                            "cors"})
    domains = tuple(d.lower() for d in vh.domains)  # type: ignore[attr-defined]
    if not domains:
        raise ConfigError("at least one domain is required", field="domains")
    for index, domain in enumerate(domains):
        if ("*" in domain and domain != "*" and not (
            domain.startswith("*") or domain.endswith("*")
        )) or domain.count("*") > 1:
            raise ConfigError(f"invalid wildcard domain {domain!r}", field=f"domains[{index}]")
    retry = None
    if vh.HasField("retry_policy"):  # type: ignore[attr-defined]
        retry = _within("retry_policy", _retry_policy, vh.retry_policy)  # type: ignore
    per_filter = translate_per_filter_configs(vh.typed_per_filter_config)  # type: ignore
    return VirtualHost(
        name=vh.name,  # type: ignore[attr-defined]
        domains=domains,
        routes=tuple(
            _within(f"routes[{i}]", _route, r) for i, r in enumerate(vh.routes)  # type: ignore
        ),
        mutations=translate_mutations(vh),
        retry_policy=retry,
        per_request_buffer_limit_bytes=_optional_u32(vh, "per_request_buffer_limit_bytes"),
        per_filter=per_filter,
        mirror_policies=_mirror_policies(vh.request_mirror_policies),  # type: ignore
        cors=_within("cors", _deprecated_cors, vh.cors)  # type: ignore[attr-defined]
        if vh.HasField("cors") else None,  # type: ignore[attr-defined]
    )


def _route(r: Message) -> Route:
    _refuse_unknown(r, _MUTATION_FIELDS | {"match", "route", "redirect", "direct_response",
                                           "decorator", "per_request_buffer_limit_bytes",
                                           "typed_per_filter_config"})
    kind = r.WhichOneof("action")
    action: Action
    if kind == "route":
        action = _within("route", _forward_action, r.route)  # type: ignore[attr-defined]
    elif kind == "redirect":
        action = _within("redirect", _redirect_action, r.redirect)  # type: ignore[attr-defined]
    elif kind == "direct_response":
        action = _within("direct_response", _direct_response,
                         r.direct_response)  # type: ignore[attr-defined]
    else:
        raise ConfigError("a route needs route, redirect or direct_response", field="action")
    return Route(
        name=r.name,  # type: ignore[attr-defined]
        match=_within("match", _route_match, r.match),  # type: ignore[attr-defined]
        action=action,
        mutations=translate_mutations(r),
        decorator=_within("decorator", _decorator, r.decorator)  # type: ignore[attr-defined]
        if r.HasField("decorator") else None,
        per_request_buffer_limit_bytes=_optional_u32(r, "per_request_buffer_limit_bytes"),
        per_filter=translate_per_filter_configs(r.typed_per_filter_config),  # type: ignore
    )


_FILTER_CONFIG_TYPE = "envoy.config.route.v3.FilterConfig"
_CORS_POLICY_TYPE = "envoy.extensions.filters.http.cors.v3.CorsPolicy"


def translate_per_filter_configs(configs: Any) -> PerFilterConfigs:
    """typed_per_filter_config: filter name -> its per-route config, translated by the filter
    that takes that type (Envoy PerFilterConfigs: the factory is found by the type URL; an
    entry no factory takes is refused unless wrapped in a FilterConfig with is_optional)."""
    translated = []
    for name in sorted(configs):
        where = f"typed_per_filter_config[{name}]"
        config = _within(where, _per_filter_config, configs[name])
        if config is not None:
            translated.append((name, config))
    return tuple(translated)


def _per_filter_config(packed: Any) -> Any | None:
    message = unpack_any(packed, field="")
    optional = False
    if message.DESCRIPTOR.full_name == _FILTER_CONFIG_TYPE:
        _refuse_unknown(message, {"config", "is_optional", "disabled"})
        if message.disabled:  # type: ignore[attr-defined]
            raise unsupported("disabled", "a filter turned off per route")
        optional = message.is_optional  # type: ignore[attr-defined]
        if not message.HasField("config"):
            # Envoy: an empty FilterConfig is only meaningful with disabled.
            raise ConfigError("config is required", field="config")
        packed = message.config  # type: ignore[attr-defined]
        try:
            message = unpack_any(packed, field="config")
        except ConfigError:
            if optional:
                return None  # Envoy skips an optional config of an unknown type
            raise
    type_name = message.DESCRIPTOR.full_name
    translate = per_route_translator(type_name)
    if translate is None:
        if optional:
            return None
        raise ConfigError(f"a per-route config of type {type_name} is not supported by "
                          "Pointsman (no HTTP filter of ours takes it)", field="")
    return translate(message)


def _deprecated_cors(policy: Message) -> Any:
    """The deprecated route-level `cors` (config.route.v3.CorsPolicy): the same fields as the
    CORS filter's per-route CorsPolicy, which the filter uses only when no
    typed_per_filter_config policy applies (Envoy's CorsFilter::initializeCorsPolicies)."""
    translate = per_route_translator(_CORS_POLICY_TYPE)
    if translate is None:
        raise ConfigError("the CORS filter is not loaded", field="")
    return translate(policy)


def _mirror_policies(policies: Any) -> tuple[MirrorPolicy, ...]:
    return tuple(_within(f"request_mirror_policies[{index}]", _mirror_policy, policy)
                 for index, policy in enumerate(policies))


def _mirror_policy(p: Any) -> MirrorPolicy:
    _refuse_unknown(p, {"cluster", "cluster_header", "runtime_fraction", "trace_sampled",
                        "disable_shadow_host_suffix_append", "host_rewrite_literal"})
    if p.cluster and p.cluster_header:
        raise ConfigError(f"Only one of cluster {p.cluster!r} or cluster_header "
                          f"{p.cluster_header!r} in request mirror policy can be specified",
                          field="cluster")
    if not p.cluster and not p.cluster_header:
        raise ConfigError("Exactly one of cluster or cluster_header in request mirror policy "
                          "need to be specified", field="cluster")
    numerator, denominator = 100, 100
    if p.HasField("runtime_fraction"):
        # The runtime key names a layer value we never have (no layered_runtime): Envoy then
        # uses default_value, as we do.
        _refuse_unknown(p.runtime_fraction, {"default_value", "runtime_key"})
        fraction = p.runtime_fraction.default_value
        numerator = fraction.numerator
        denominator = _DENOMINATORS[fraction.denominator]
    return MirrorPolicy(
        cluster=p.cluster, cluster_header=p.cluster_header.lower(),
        numerator=numerator, denominator=denominator,
        trace_sampled=p.trace_sampled.value if p.HasField("trace_sampled") else None,
        disable_shadow_host_suffix_append=p.disable_shadow_host_suffix_append,
        host_rewrite_literal=p.host_rewrite_literal)


_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}  # envoy.type.v3.FractionalPercent


def _optional_u32(message: Message, name: str) -> int | None:
    """A google.protobuf.UInt32Value field: its value, None when unset."""
    if not message.HasField(name):
        return None
    return int(getattr(message, name).value)


def _decorator(d: Message) -> Decorator:
    operation = d.operation  # type: ignore[attr-defined]
    if not operation:  # PGV: min_len 1
        raise ConfigError("must not be empty", field="operation")
    propagate = d.propagate.value if d.HasField("propagate") else True  # type: ignore[attr-defined]
    return Decorator(operation, propagate)


def _route_match(m: Message) -> RouteMatch:
    _refuse_unknown(m, {"prefix", "path", "safe_regex", "path_separated_prefix",
                        "connect_matcher", "case_sensitive", "headers", "query_parameters",
                        "grpc"})
    kind = m.WhichOneof("path_specifier")
    pattern = None
    path = ""
    if kind == "connect_matcher":
        pass  # matches CONNECT requests only (route_components.proto RouteMatch)
    elif kind == "safe_regex":
        pattern = _within("safe_regex", translate_regex, m.safe_regex, "safe_regex")  # type: ignore
    elif kind in ("prefix", "path", "path_separated_prefix"):
        path = getattr(m, kind)
        if kind == "path_separated_prefix" and (
            not path.startswith("/") or (path.endswith("/") and path != "/") or "?" in path
            or "#" in path
        ):
            raise ConfigError("must start with '/', not end with '/' and hold no '?' or '#'",
                              field="path_separated_prefix")
    else:
        raise ConfigError(f"path specifier {kind!r} is not supported", field=str(kind or "path"))
    case_sensitive = True
    if m.HasField("case_sensitive"):  # type: ignore[attr-defined]
        case_sensitive = m.case_sensitive.value  # type: ignore[attr-defined]
    return RouteMatch(
        path_kind={"safe_regex": "regex", "connect_matcher": "connect"}.get(  # type: ignore
            kind, kind),
        path=path,
        pattern=pattern,
        case_sensitive=case_sensitive,
        headers=tuple(_within(f"headers[{i}]", translate_header_matcher, h)
                      for i, h in enumerate(m.headers)),  # type: ignore[attr-defined]
        query_parameters=tuple(_within(f"query_parameters[{i}]", translate_query_matcher, q)
                               for i, q in enumerate(m.query_parameters)),  # type: ignore
        grpc=m.HasField("grpc"),  # type: ignore[attr-defined]
    )


def _regex_rewrite(m: Message) -> RegexRewrite:
    _refuse_unknown(m, {"pattern", "substitution"})
    pattern = _within("pattern", translate_regex, m.pattern, "pattern")  # type: ignore[attr-defined]
    return RegexRewrite(pattern, m.substitution)  # type: ignore[attr-defined]


_FORWARD_FIELDS = {
    "cluster", "cluster_header", "weighted_clusters", "cluster_not_found_response_code",
    "prefix_rewrite", "regex_rewrite", "host_rewrite_literal", "auto_host_rewrite",
    "host_rewrite_header", "timeout", "idle_timeout", "retry_policy", "hash_policy",
    "max_grpc_timeout", "grpc_timeout_offset", "upgrade_configs", "request_mirror_policies",
    "cors",
}


def _forward_action(a: Message) -> ForwardAction:
    _refuse_unknown(a, _FORWARD_FIELDS)
    specifier = a.WhichOneof("cluster_specifier")
    if specifier is None:
        raise ConfigError("a cluster specifier is required", field="cluster_specifier")
    if a.prefix_rewrite and a.HasField("regex_rewrite"):  # type: ignore[attr-defined]
        raise ConfigError("prefix_rewrite and regex_rewrite are exclusive", field="regex_rewrite")
    entries: tuple[WeightedClusterEntry, ...] = ()
    total = 0
    if specifier == "weighted_clusters":
        entries, total = _within("weighted_clusters", _weighted, a.weighted_clusters)  # type: ignore
    retry = None
    if a.HasField("retry_policy"):  # type: ignore[attr-defined]
        retry = _within("retry_policy", _retry_policy, a.retry_policy)  # type: ignore
    not_found = {0: 503, 1: 404, 2: 500}[a.cluster_not_found_response_code]  # type: ignore
    upgrades, upgrades_disabled = _within("upgrade_configs", _upgrades,
                                          a.upgrade_configs)  # type: ignore[attr-defined]
    return ForwardAction(
        cluster=a.cluster,  # type: ignore[attr-defined]
        cluster_header=a.cluster_header.lower(),  # type: ignore[attr-defined]
        weighted_clusters=entries,
        total_weight=total,
        cluster_not_found_response_code=not_found,
        prefix_rewrite=a.prefix_rewrite if a.prefix_rewrite else None,  # type: ignore
        regex_rewrite=_within("regex_rewrite", _regex_rewrite, a.regex_rewrite)  # type: ignore
        if a.HasField("regex_rewrite") else None,  # type: ignore[attr-defined]
        host_rewrite_literal=a.host_rewrite_literal,  # type: ignore[attr-defined]
        auto_host_rewrite=a.auto_host_rewrite.value,  # type: ignore[attr-defined]
        host_rewrite_header=a.host_rewrite_header.lower(),  # type: ignore[attr-defined]
        timeout=_seconds(a.timeout) if a.HasField("timeout")  # type: ignore[attr-defined]
        else DEFAULT_ROUTE_TIMEOUT,
        idle_timeout=_seconds(a.idle_timeout)  # type: ignore[attr-defined]
        if a.HasField("idle_timeout") else None,  # type: ignore[attr-defined]
        retry_policy=retry,
        hash_policies=tuple(_within(f"hash_policy[{i}]", _hash_policy, h)
                            for i, h in enumerate(a.hash_policy)),  # type: ignore
        max_grpc_timeout=_seconds(a.max_grpc_timeout)  # type: ignore[attr-defined]
        if a.HasField("max_grpc_timeout") else None,  # type: ignore[attr-defined]
        grpc_timeout_offset=_seconds(a.grpc_timeout_offset)  # type: ignore[attr-defined]
        if a.HasField("grpc_timeout_offset") else 0.0,  # type: ignore[attr-defined]
        upgrades=upgrades,
        upgrades_disabled=upgrades_disabled,
        mirror_policies=_mirror_policies(a.request_mirror_policies),  # type: ignore
        cors=_within("cors", _deprecated_cors, a.cors)  # type: ignore[attr-defined]
        if a.HasField("cors") else None,  # type: ignore[attr-defined]
    )


def _upgrades(configs: list[Message]) -> tuple[frozenset[str], frozenset[str]]:
    """(enabled, disabled) upgrade types of a route. Either overrides the HCM's setting for
    its type (Envoy's createUpgradeFilterChain); types not named follow the HCM."""
    enabled, disabled = set(), set()
    for index, config in enumerate(configs):
        _refuse_unknown(config, {"upgrade_type", "enabled"})
        kind = config.upgrade_type.lower()  # type: ignore[attr-defined]
        if kind not in ("websocket", "connect"):
            raise ConfigError(f"upgrade type {kind!r} is not supported",
                              field=f"[{index}].upgrade_type")
        if not config.HasField("enabled") or config.enabled.value:  # type: ignore
            enabled.add(kind)
        else:
            disabled.add(kind)
    return frozenset(enabled), frozenset(disabled)


def _weighted(w: Message) -> tuple[tuple[WeightedClusterEntry, ...], int]:
    _refuse_unknown(w, {"clusters", "total_weight"})
    entries = []
    for index, c in enumerate(w.clusters):  # type: ignore[attr-defined]
        try:
            _refuse_unknown(c, _MUTATION_FIELDS | {"name", "cluster_header", "weight",
                                                   "host_rewrite_literal"})
        except ConfigError as error:
            raise error.within(field=f"clusters[{index}]") from error
        if bool(c.name) == bool(c.cluster_header):
            raise ConfigError("exactly one of name and cluster_header is required",
                              field=f"clusters[{index}]")
        entries.append(WeightedClusterEntry(
            name=c.name, weight=c.weight.value, cluster_header=c.cluster_header.lower(),
            mutations=_within(f"clusters[{index}]", translate_mutations, c),
            host_rewrite_literal=c.host_rewrite_literal,
        ))
    total = sum(e.weight for e in entries)
    if w.HasField("total_weight") and w.total_weight.value != total:  # type: ignore
        raise ConfigError(f"weights sum to {total}, not {w.total_weight.value}",  # type: ignore
                          field="total_weight")
    if total <= 0:
        raise ConfigError("weights must sum to more than 0", field="clusters")
    return tuple(entries), total


# router/router.md "x-envoy-retry-on" and "x-envoy-retry-grpc-on".
RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
    "retriable-4xx", "refused-stream", "retriable-status-codes", "retriable-headers",
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})


def _retry_policy(p: Message) -> RetryPolicy:
    _refuse_unknown(p, {"retry_on", "num_retries", "per_try_timeout", "retriable_status_codes",
                        "retry_back_off", "retry_host_predicate",
                        "host_selection_retry_max_attempts", "retriable_headers"})
    retry_on = frozenset(s.strip() for s in p.retry_on.split(",") if s.strip())  # type: ignore
    for condition in retry_on - RETRY_ON:
        raise unsupported("retry_on", f"condition {condition!r}")
    base, maximum = 0.025, 0.25
    if p.HasField("retry_back_off"):  # type: ignore[attr-defined]
        back_off = p.retry_back_off  # type: ignore[attr-defined]
        base = _seconds(back_off.base_interval)
        if base <= 0:
            raise ConfigError("must be greater than zero", field="retry_back_off.base_interval")
        maximum = _seconds(back_off.max_interval) if back_off.HasField("max_interval") \
            else base * 10
    avoid = False
    for index, predicate in enumerate(p.retry_host_predicate):  # type: ignore[attr-defined]
        if predicate.name != "envoy.retry_host_predicates.previous_hosts":
            raise unsupported(f"retry_host_predicate[{index}]", predicate.name)
        avoid = True
    return RetryPolicy(
        retry_on=retry_on,
        num_retries=p.num_retries.value if p.HasField("num_retries") else 1,  # type: ignore
        per_try_timeout=_seconds(p.per_try_timeout)  # type: ignore[attr-defined]
        if p.HasField("per_try_timeout") else None,  # type: ignore[attr-defined]
        retriable_status_codes=frozenset(p.retriable_status_codes),  # type: ignore
        backoff_base=base,
        backoff_max=maximum,
        avoid_previous_hosts=avoid,
        host_selection_retry_max_attempts=max(1, p.host_selection_retry_max_attempts),  # type: ignore
        retriable_headers=tuple(
            _within(f"retriable_headers[{i}]", translate_header_matcher, h)
            for i, h in enumerate(p.retriable_headers)),  # type: ignore[attr-defined]
    )


def _hash_policy(h: Message) -> HashPolicy:
    _refuse_unknown(h, {"header", "cookie", "connection_properties", "query_parameter",
                        "terminal"})
    kind = h.WhichOneof("policy_specifier")
    terminal = h.terminal  # type: ignore[attr-defined]
    if kind == "header":
        _refuse_unknown(h.header, {"header_name"})  # type: ignore[attr-defined]
        return HashPolicy("header", h.header.header_name.lower(), terminal=terminal)  # type: ignore
    if kind == "cookie":
        cookie = h.cookie  # type: ignore[attr-defined]
        _refuse_unknown(cookie, {"name", "ttl", "path"})
        ttl = _seconds(cookie.ttl) if cookie.HasField("ttl") else None
        return HashPolicy("cookie", cookie.name, cookie_ttl=ttl, cookie_path=cookie.path,
                          terminal=terminal)
    if kind == "connection_properties":
        if not h.connection_properties.source_ip:  # type: ignore[attr-defined]
            raise ConfigError("source_ip must be true", field="connection_properties.source_ip")
        return HashPolicy("source_ip", terminal=terminal)
    if kind == "query_parameter":
        return HashPolicy("query_parameter", h.query_parameter.name,  # type: ignore
                          terminal=terminal)
    raise unsupported(str(kind or "policy_specifier"))


_REDIRECT_CODES = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}


def _redirect_action(r: Message) -> RedirectAction:
    _refuse_unknown(r, {"https_redirect", "scheme_redirect", "host_redirect", "port_redirect",
                        "path_redirect", "prefix_rewrite", "regex_rewrite", "response_code",
                        "strip_query"})
    scheme = "https" if r.https_redirect else r.scheme_redirect.lower()  # type: ignore
    rewrite = r.WhichOneof("path_rewrite_specifier")
    return RedirectAction(
        scheme=scheme,
        host=r.host_redirect,  # type: ignore[attr-defined]
        port=r.port_redirect,  # type: ignore[attr-defined]
        path=r.path_redirect if rewrite == "path_redirect" else "",  # type: ignore
        prefix_rewrite=r.prefix_rewrite if rewrite == "prefix_rewrite" else None,  # type: ignore
        regex_rewrite=_within("regex_rewrite", _regex_rewrite, r.regex_rewrite)  # type: ignore
        if rewrite == "regex_rewrite" else None,
        response_code=_REDIRECT_CODES[r.response_code],  # type: ignore[attr-defined]
        strip_query=r.strip_query,  # type: ignore[attr-defined]
    )


def _direct_response(d: Message) -> DirectResponseAction:
    _refuse_unknown(d, {"status", "body"})
    status = d.status  # type: ignore[attr-defined]
    if not 200 <= status < 600:
        raise ConfigError("status must be in [200, 600)", field="status")
    body = b""
    if d.HasField("body"):  # type: ignore[attr-defined]
        source = d.body  # type: ignore[attr-defined]
        _refuse_unknown(source, {"inline_string", "inline_bytes", "filename"})
        kind = source.WhichOneof("specifier")
        if kind == "inline_string":
            body = source.inline_string.encode()
        elif kind == "inline_bytes":
            body = source.inline_bytes
        elif kind == "filename":
            try:
                with open(source.filename, "rb") as handle:
                    body = handle.read()
            except OSError as error:
                raise ConfigError(str(error), field="body.filename") from error
    return DirectResponseAction(status, body)

