"""`envoy.filters.http.rbac`: allow or deny by source IP, headers, path and port.

Envoy doc: configuration/http/http_filters/rbac_filter, api config/rbac/v3/rbac.proto. A
request matches a policy when any permission and any principal match. ALLOW: requests that
match no policy are denied; DENY: requests that match a policy are denied. Denied requests get
403 "RBAC: access denied". `remote_ip` is the trusted client address (XFF rules),
`direct_remote_ip` the connection's peer. `authenticated` is the downstream TLS peer
(proxy.http.peer: URI SANs, then DNS SANs, then the subject). Without `rules` the filter
allows everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, HttpStream, LocalReply, register_http_filter
from proxy.http.peer import PEER_KEY, PeerTls
from proxy.http.routing import header_matches
from proxy.model.fields import reject_unsupported
from proxy.model.matchers import translate_header_matcher, translate_string_matcher

Predicate = Callable[[HttpStream], bool]


@dataclass(frozen=True)
class RbacConfig:
    action: str  # "ALLOW", "DENY", "LOG"; "" when no rules (allow all)
    policies: tuple[tuple[str, Predicate, Predicate], ...]
    rules_stat_prefix: str = ""  # an extra prefix for the allowed/denied stats


def _within(prefix: str, build: Callable[[Any], Predicate], message: Any) -> Predicate:
    try:
        return build(message)
    except ConfigError as error:
        raise error.within(field=prefix) from error


def _cidr(message: Any) -> Callable[[str], bool]:
    length = message.prefix_len.value if message.HasField("prefix_len") else None
    try:
        network = ipaddress.ip_network(
            message.address_prefix if length is None else f"{message.address_prefix}/{length}",
            strict=False)
    except ValueError as error:
        raise ConfigError(str(error), field="address_prefix") from error

    def contains(address: str) -> bool:
        try:
            return ipaddress.ip_address(address) in network
        except ValueError:
            return False
    return contains


def _path(message: Any) -> Predicate:
    if message.WhichOneof("rule") != "path":
        raise unsupported("url_path")
    matcher = translate_string_matcher(message.path)
    return lambda stream: matcher.matches(stream.request.path_only)


def _header(message: Any) -> Predicate:
    matcher = translate_header_matcher(message)
    return lambda stream: header_matches(matcher, stream.request)


def _authenticated(message: Any) -> Predicate:
    """Envoy's AuthenticatedMatcher: no TLS never matches; no principal_name matches any TLS
    connection; else any URI SAN, DNS SAN or the subject matching (rbac.proto)."""
    if not message.HasField("principal_name"):
        return lambda stream: isinstance(stream.connection_state.get(PEER_KEY), PeerTls)
    try:
        matcher = translate_string_matcher(message.principal_name)
    except ConfigError as error:
        raise error.within(field="principal_name") from error

    def matches(stream: HttpStream) -> bool:
        peer = stream.connection_state.get(PEER_KEY)
        if not isinstance(peer, PeerTls):
            return False
        return any(matcher.matches(name) for name in peer.principal_candidates())
    return matches


def _list(items: Any, build: Callable[[Any], Predicate], prefix: str) -> list[Predicate]:
    return [_within(f"{prefix}[{i}]", build, item) for i, item in enumerate(items)]


def _permission(p: Any) -> Predicate:
    kind = p.WhichOneof("rule")
    if kind == "any":
        return lambda stream: True
    if kind == "header":
        return _within("header", _header, p.header)
    if kind == "url_path":
        return _within("url_path", _path, p.url_path)
    if kind == "destination_port":
        port = p.destination_port
        return lambda stream: stream.local_address[1] == port
    if kind == "destination_ip":
        contains = _cidr(p.destination_ip)
        return lambda stream: contains(stream.local_address[0])
    if kind in ("and_rules", "or_rules"):
        rules = _list(getattr(p, kind).rules, _permission, f"{kind}.rules")
        combine = all if kind == "and_rules" else any
        return lambda stream: combine(rule(stream) for rule in rules)
    if kind == "not_rule":
        inner = _within("not_rule", _permission, p.not_rule)
        return lambda stream: not inner(stream)
    raise unsupported(str(kind or "rule"))


def _principal(p: Any) -> Predicate:
    kind = p.WhichOneof("identifier")
    if kind == "any":
        return lambda stream: True
    if kind == "header":
        return _within("header", _header, p.header)
    if kind == "url_path":
        return _within("url_path", _path, p.url_path)
    if kind in ("direct_remote_ip", "source_ip"):
        # rbac.proto: source_ip (deprecated for direct_remote_ip) "will honor proxy protocol,
        # but will not honor XFF"; remote_address already carries the PROXY header's address.
        contains = _cidr(getattr(p, kind))
        return lambda stream: contains(stream.remote_address[0])
    if kind == "remote_ip":
        contains = _cidr(p.remote_ip)
        return lambda stream: contains(stream.trusted_client_address or stream.remote_address[0])
    if kind == "authenticated":
        return _within("authenticated", _authenticated, p.authenticated)
    if kind in ("and_ids", "or_ids"):
        ids = _list(getattr(p, kind).ids, _principal, f"{kind}.ids")
        combine = all if kind == "and_ids" else any
        return lambda stream: combine(rule(stream) for rule in ids)
    if kind == "not_id":
        inner = _within("not_id", _principal, p.not_id)
        return lambda stream: not inner(stream)
    raise unsupported(str(kind or "identifier"))


def translate(message: Message) -> RbacConfig:
    m: Any = message
    reject_unsupported(m, {"rules", "rules_stat_prefix"})
    if not m.HasField("rules"):
        return RbacConfig("", (), m.rules_stat_prefix)
    rules = m.rules
    if rules.HasField("audit_logging_options"):
        raise unsupported("rules.audit_logging_options")
    action = {0: "ALLOW", 1: "DENY", 2: "LOG"}[rules.action]
    policies = []
    for name in sorted(rules.policies):
        policy = rules.policies[name]
        where = f"rules.policies[{name}]"
        for descriptor, _ in policy.ListFields():
            if descriptor.name not in ("permissions", "principals"):
                raise unsupported(f"{where}.{descriptor.name}")
        permissions = _list(policy.permissions, _permission, f"{where}.permissions")
        principals = _list(policy.principals, _principal, f"{where}.principals")
        policies.append((name, _any_of(permissions), _any_of(principals)))
    return RbacConfig(action, tuple(policies), m.rules_stat_prefix)


def _any_of(predicates: list[Predicate]) -> Predicate:
    return lambda stream: any(predicate(stream) for predicate in predicates)


def matched_policy(config: RbacConfig, stream: HttpStream) -> str | None:
    for name, permission, principal in config.policies:
        if permission(stream) and principal(stream):
            return name
    return None


class RbacFilter(HttpFilter):
    def __init__(self, config: RbacConfig, stats: Any, prefix: str) -> None:
        self.config = config
        self.stats = stats
        self.prefix = prefix

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        if not self.config.action or self.config.action == "LOG":
            return None
        matched = matched_policy(self.config, stream)
        allowed = (matched is not None) == (self.config.action == "ALLOW")
        self.stats.counter(f"{self.prefix}{'allowed' if allowed else 'denied'}").inc()
        if allowed:
            return None
        return LocalReply(403, "RBAC: access denied", details="rbac_access_denied_matched_policy"
                          f"[{matched or 'none'}]")


class RbacFactory:
    name = "envoy.filters.http.rbac"
    config_type = "envoy.extensions.filters.http.rbac.v3.RBAC"

    def translate(self, message: Message) -> RbacConfig:
        return translate(message)

    def create(self, config: RbacConfig, context: ServerContext, *,
               stat_prefix: str = "", name: str = "") -> FilterMaker:
        # Envoy 1.40: http.<HCM stat_prefix>.rbac.[<rules_stat_prefix>.]{allowed,denied}
        rules = f"{config.rules_stat_prefix}." if config.rules_stat_prefix else ""
        prefix = f"http.{stat_prefix}.rbac.{rules}"
        return lambda: RbacFilter(config, context.stats, prefix)


register_http_filter(RbacFactory())
