"""`envoy.config.rbac.v3.RBAC` -> predicates: the matcher model shared by the HTTP and the
network RBAC filters (proxy.http.filters.rbac, proxy.network.rbac).

Envoy doc: api config/rbac/v3/rbac.proto; both filters build one engine from it
(filters/common/rbac). A policy matches when any of its permissions and any of its principals
match. ALLOW: a subject that matches no policy is denied; DENY: a subject that matches a
policy is denied; LOG: always allowed.

The predicates are generic over the subject (an HTTP stream, a downstream connection): each
filter passes `RbacInputs`, the accessors of what a matcher reads. An input a filter does not
have is `None`, and a matcher that needs it is refused or never matches, as Envoy does:
the network filter refuses `header` ("Found header(...) rule, not supported by RBAC network
filter", network/rbac/config.cc) and evaluates `url_path` against empty request headers
(engine_impl.cc handleAction without headers), so it never matches.

Translated once, at config time; a ConfigError names the field path from `rules`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from protos.errors import ConfigError, unsupported
from proxy.model.matchers import translate_string_matcher

S = TypeVar("S")
Predicate = Callable[[S], bool]


class TlsPeer(Protocol):
    """A verified downstream TLS peer (proxy.http.peer.PeerTls)."""

    def principal_candidates(self) -> tuple[str, ...]:
        """URI SANs, DNS SANs, then the subject: what `principal_name` is matched against."""


@dataclass(frozen=True)
class RbacInputs(Generic[S]):
    """What the matchers read from a subject of type S."""

    local_address: Callable[[S], tuple[str, int]]
    direct_remote_ip: Callable[[S], str]  # the connection's peer
    source_ip: Callable[[S], str]  # honours the PROXY protocol, not XFF
    remote_ip: Callable[[S], str]  # the trusted client address (XFF rules for HTTP)
    peer: Callable[[S], TlsPeer | None]  # the verified TLS peer, None without TLS
    # The connection's SNI (Envoy's requestedServerName); None: the filter does not have it.
    requested_server_name: Callable[[S], str] | None
    # `header` matchers: None refuses them (the network filter), as Envoy does.
    header: Callable[[Any], Predicate[S]] | None
    # `url_path` matchers: None makes them never match (no request headers), as Envoy does.
    path: Callable[[S], str | None] | None


@dataclass(frozen=True)
class Policy(Generic[S]):
    name: str
    permission: Predicate[S]
    principal: Predicate[S]

    def matches(self, subject: S) -> bool:
        return self.permission(subject) and self.principal(subject)


@dataclass(frozen=True)
class Rules(Generic[S]):
    """A translated `envoy.config.rbac.v3.RBAC`."""

    action: str  # "ALLOW", "DENY", "LOG"
    policies: tuple[Policy[S], ...]

    def matched_policy(self, subject: S) -> str | None:
        """The first matching policy, in name order (Envoy walks a sorted map)."""
        for policy in self.policies:
            if policy.matches(subject):
                return policy.name
        return None

    def evaluate(self, subject: S) -> tuple[bool, str | None]:
        """(allowed, matched policy): Envoy's RoleBasedAccessControlEngineImpl::handleAction."""
        matched = self.matched_policy(subject)
        if self.action == "LOG":
            return True, matched
        return (matched is not None) == (self.action == "ALLOW"), matched


_ACTIONS = {0: "ALLOW", 1: "DENY", 2: "LOG"}


def translate_rules(message: Any, inputs: RbacInputs[S]) -> Rules[S]:
    """`envoy.config.rbac.v3.RBAC` -> Rules; fields named from the RBAC message."""
    if message.HasField("audit_logging_options"):
        raise unsupported("audit_logging_options")
    policies = []
    for name in sorted(message.policies):
        policy = message.policies[name]
        where = f"policies[{name}]"
        for descriptor, _ in policy.ListFields():
            if descriptor.name not in ("permissions", "principals"):
                raise unsupported(f"{where}.{descriptor.name}")
        builder = _Builder(inputs)
        permissions = builder.list(policy.permissions, builder.permission, f"{where}.permissions")
        principals = builder.list(policy.principals, builder.principal, f"{where}.principals")
        policies.append(Policy(name, _any_of(permissions), _any_of(principals)))
    return Rules(_ACTIONS[message.action], tuple(policies))


def _any_of(predicates: list[Predicate[S]]) -> Predicate[S]:
    return lambda subject: any(predicate(subject) for predicate in predicates)


def _within(prefix: str, build: Callable[[Any], Predicate[S]], message: Any) -> Predicate[S]:
    try:
        return build(message)
    except ConfigError as error:
        raise error.within(field=prefix) from error


def cidr(message: Any) -> Callable[[str], bool]:
    """A core.v3.CidrRange as a test on an address text (false for a non-IP text). An unset
    `prefix_len` is 0, as Envoy reads it (CidrRange::create takes prefix_len().value()): the
    range holds every address of its family (Envoy 1.40, test_network_rbac_vs_envoy.py)."""
    try:
        network = ipaddress.ip_network(
            f"{message.address_prefix}/{message.prefix_len.value}", strict=False)
    except ValueError as error:
        raise ConfigError(str(error), field="address_prefix") from error

    def contains(address: str) -> bool:
        try:
            return ipaddress.ip_address(address) in network
        except ValueError:
            return False
    return contains


class _Builder(Generic[S]):
    """Permission and Principal trees -> predicates over S."""

    def __init__(self, inputs: RbacInputs[S]) -> None:
        self.inputs = inputs

    def list(self, items: Any, build: Callable[[Any], Predicate[S]], prefix: str
             ) -> list[Predicate[S]]:
        return [_within(f"{prefix}[{i}]", build, item) for i, item in enumerate(items)]

    def header(self, message: Any) -> Predicate[S]:
        if self.inputs.header is None:
            # Envoy 1.40: "Found header(...) rule,not supported by RBAC network filter".
            raise ConfigError("a header rule is not supported by the RBAC network filter "
                              "(Envoy refuses it too)")
        return self.inputs.header(message)

    def url_path(self, message: Any) -> Predicate[S]:
        if message.WhichOneof("rule") != "path":
            raise unsupported("url_path")
        matcher = translate_string_matcher(message.path)
        path = self.inputs.path
        if path is None:
            return lambda subject: False  # no request headers: Envoy's PathMatcher is false

        def matches(subject: S) -> bool:
            value = path(subject)
            return value is not None and matcher.matches(value)
        return matches

    def authenticated(self, message: Any) -> Predicate[S]:
        """Envoy's AuthenticatedMatcher: no TLS never matches; no principal_name matches any
        TLS connection; else any URI SAN, DNS SAN or the subject matching (rbac.proto)."""
        peer = self.inputs.peer
        if not message.HasField("principal_name"):
            return lambda subject: peer(subject) is not None
        try:
            matcher = translate_string_matcher(message.principal_name)
        except ConfigError as error:
            raise error.within(field="principal_name") from error

        def matches(subject: S) -> bool:
            tls = peer(subject)
            return tls is not None and any(
                matcher.matches(name) for name in tls.principal_candidates())
        return matches

    def permission(self, p: Any) -> Predicate[S]:
        kind = p.WhichOneof("rule")
        local = self.inputs.local_address
        if kind == "any":
            return lambda subject: True
        if kind == "header":
            return _within("header", self.header, p.header)
        if kind == "url_path":
            return _within("url_path", self.url_path, p.url_path)
        if kind == "destination_port":
            port = p.destination_port
            return lambda subject: local(subject)[1] == port
        if kind == "destination_port_range":
            # rbac.proto: type.v3.Int32Range, start inclusive, end exclusive.
            start, end = p.destination_port_range.start, p.destination_port_range.end
            return lambda subject: start <= local(subject)[1] < end
        if kind == "destination_ip":
            contains = _within("destination_ip", cidr, p.destination_ip)
            return lambda subject: contains(local(subject)[0])
        if kind == "requested_server_name":
            if self.inputs.requested_server_name is None:
                raise unsupported("requested_server_name")
            return _within("requested_server_name", self.server_name, p.requested_server_name)
        if kind in ("and_rules", "or_rules"):
            rules = self.list(getattr(p, kind).rules, self.permission, f"{kind}.rules")
            combine = all if kind == "and_rules" else any
            return lambda subject: combine(rule(subject) for rule in rules)
        if kind == "not_rule":
            inner = _within("not_rule", self.permission, p.not_rule)
            return lambda subject: not inner(subject)
        raise unsupported(str(kind or "rule"))

    def server_name(self, message: Any) -> Predicate[S]:
        sni = self.inputs.requested_server_name
        assert sni is not None  # checked by `permission`
        matcher = translate_string_matcher(message)
        return lambda subject: matcher.matches(sni(subject))

    def principal(self, p: Any) -> Predicate[S]:
        kind = p.WhichOneof("identifier")
        if kind == "any":
            return lambda subject: True
        if kind == "header":
            return _within("header", self.header, p.header)
        if kind == "url_path":
            return _within("url_path", self.url_path, p.url_path)
        if kind in ("direct_remote_ip", "source_ip", "remote_ip"):
            address = getattr(self.inputs, kind)
            contains = _within(kind, cidr, getattr(p, kind))
            return lambda subject: contains(address(subject))
        if kind == "authenticated":
            return _within("authenticated", self.authenticated, p.authenticated)
        if kind in ("and_ids", "or_ids"):
            ids = self.list(getattr(p, kind).ids, self.principal, f"{kind}.ids")
            combine = all if kind == "and_ids" else any
            return lambda subject: combine(rule(subject) for rule in ids)
        if kind == "not_id":
            inner = _within("not_id", self.principal, p.not_id)
            return lambda subject: not inner(subject)
        raise unsupported(str(kind or "identifier"))



def response_detail(policy: str | None) -> str:
    """Envoy's RBAC::responseDetail: the denial's details, whitespace in the policy id
    replaced by '_' (filters/common/rbac/utility.cc), `none` when no policy matched."""
    sanitized = "".join("_" if char in " \t\f\v\n\r" else char for char in policy or "none")
    return f"rbac_access_denied_matched_policy[{sanitized}]"
