"""Istio AuthorizationPolicies -> Envoy RBAC HTTP filters on a sidecar's inbound port, as
istiod builds them (Istio docs, "Authorization policy": "If there are any DENY policies that
match the request, deny the request. If there are no ALLOW policies for the workload, allow
the request. If any of the ALLOW policies match the request, allow the request. Deny the
request."):

- a DENY RBAC filter of every DENY policy's rules, then an ALLOW RBAC filter of every ALLOW
  policy's rules, present only when such a policy applies (an ALLOW filter with no usable
  rule denies everything, as an ALLOW policy that matches nothing does);
- one Envoy policy per Istio rule, named `ns[NS]-policy[NAME]-rule[INDEX]` (istiod's names);
  its permissions are the `to` operations (any of them) and the request `when` conditions,
  its principals the `from` sources (any of them) and the peer `when` conditions, all ANDed;
- the peer identity is the client certificate's URI SAN (`authenticated.principal_name`):
  a principal `td/ns/n/sa/s` is `spiffe://td/ns/n/sa/s`, a namespace `n` a regex on
  `/ns/n/`; ipBlocks are `direct_remote_ip`, remoteIpBlocks `remote_ip`;
- ports (`to.operation.ports`, `destination.port`) are workload ports; a listener serves one,
  so they are decided here: a rule naming other ports is left out (it cannot match).

On a TCP port (opaque TCP, TLS passthrough) the same policies become network RBAC filters
(`envoy.filters.network.rbac`, stat_prefix `tcp.` as istiod's) before the tcp_proxy, deciding
on the connection: the peer's identity and addresses, the port. HTTP-only fields (hosts,
methods, paths and their `not` forms, `request.headers` conditions) cannot match there, and
istiod (pilot/pkg/security/authz/model, checkError) treats them by action, as Istio's
"Authorization for TCP traffic" task shows: in an ALLOW policy a rule using any of them is
left out (it allows nothing: the smaller allow), in a DENY policy those fields are dropped
and the rest of the rule applies (the wider deny: `to: [{operation: {methods: [GET]}}]`
denies every connection).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from controlplane.mesh.compile.envoy import NETWORK_RBAC, RBAC, filter_
from controlplane.mesh.kinds.authorizationpolicy import (
    AuthorizationRule,
    Operation,
    Source,
    WhenCondition,
)
from controlplane.mesh.kinds.istio import Pattern, pattern_of
from controlplane.mesh.objects import MeshObject

ANY = {"any": True}


def rbac_filters(policies: list[MeshObject], target_port: int) -> list[dict[str, Any]]:
    """The DENY then ALLOW RBAC filters of the policies applying to one workload port."""
    out = []
    for action in ("DENY", "ALLOW"):
        chosen = [policy for policy in policies if policy.spec.action == action]
        if chosen:
            out.append(filter_("envoy.filters.http.rbac", RBAC,
                               {"rules": rbac_rules(chosen, action, target_port)}))
    return out


def network_rbac_filters(policies: list[MeshObject], target_port: int
                         ) -> list[dict[str, Any]]:
    """The DENY then ALLOW network RBAC filters for a TCP port (before its tcp_proxy)."""
    out = []
    for action in ("DENY", "ALLOW"):
        chosen = [policy for policy in policies if policy.spec.action == action]
        if chosen:
            out.append(filter_("envoy.filters.network.rbac", NETWORK_RBAC, {
                "stat_prefix": "tcp.",
                "rules": rbac_rules(chosen, action, target_port, tcp=True)}))
    return out


def rbac_rules(policies: list[MeshObject], action: str, target_port: int, *,
               tcp: bool = False) -> dict[str, Any]:
    envoy_policies: dict[str, Any] = {}
    for policy in policies:
        for index, rule in enumerate(policy.spec.rules):
            if tcp:
                tcp_rule = rule_for_tcp(rule, action)
                if tcp_rule is None:
                    continue
                rule = tcp_rule
            compiled = rule_policy(rule, target_port)
            if compiled is not None:
                envoy_policies[policy_name(policy, index)] = compiled
    return {"action": action, "policies": envoy_policies}


def http_only_fields(rule: AuthorizationRule) -> list[str]:
    """The rule's fields a TCP connection has no value for, named as in the policy."""
    found = []
    for index, op in enumerate(rule.operations):
        for name, values in (("hosts", op.hosts), ("notHosts", op.not_hosts),
                             ("methods", op.methods), ("notMethods", op.not_methods),
                             ("paths", op.paths), ("notPaths", op.not_paths)):
            if values:
                found.append(f"to[{index}].operation.{name}")
    for index, condition in enumerate(rule.conditions):
        if condition.key == "request.headers":
            found.append(f"when[{index}] (request.headers[{condition.header}])")
    return found


def rule_for_tcp(rule: AuthorizationRule, action: str) -> AuthorizationRule | None:
    """The rule as istiod builds it for a TCP filter chain: None (left out) for an ALLOW
    rule with HTTP-only fields; a DENY rule without them."""
    if not http_only_fields(rule):
        return rule
    if action == "ALLOW":
        return None
    return AuthorizationRule(
        sources=rule.sources,
        operations=tuple(Operation(ports=op.ports, not_ports=op.not_ports)
                         for op in rule.operations),
        conditions=tuple(c for c in rule.conditions if c.key != "request.headers"))


def policy_name(policy: MeshObject, index: int) -> str:
    return f"ns[{policy.namespace}]-policy[{policy.name}]-rule[{index}]"


def rule_policy(rule: AuthorizationRule, target_port: int) -> dict[str, Any] | None:
    """One Istio rule as an Envoy policy; None when it cannot match on this port."""
    operations = [op for op in rule.operations if _port_fits(op, target_port)]
    if rule.operations and not operations:
        return None
    permissions: list[dict[str, Any]] = []
    if operations:
        permissions.append(_or_rules([_operation(op) for op in operations]))
    principals: list[dict[str, Any]] = []
    if rule.sources:
        principals.append(_or_ids([_source(source) for source in rule.sources]))
    for condition in rule.conditions:
        if condition.key == "destination.port":
            if not _condition_port_fits(condition, target_port):
                return None
        elif condition.key == "request.headers":
            permissions.append(_header_condition(condition))
        else:
            principals.append(_peer_condition(condition))
    return {"permissions": [_and_rules(permissions)], "principals": [_and_ids(principals)]}


# ---- ports, decided per listener -------------------------------------------------------------

def _port_fits(operation: Operation, port: int) -> bool:
    if operation.ports and port not in operation.ports:
        return False
    return port not in operation.not_ports


def _condition_port_fits(condition: WhenCondition, port: int) -> bool:
    if condition.values and str(port) not in condition.values:
        return False
    return str(port) not in condition.not_values


# ---- permissions (the request) ----------------------------------------------------------------

def _operation(op: Operation) -> dict[str, Any]:
    parts = []
    for patterns, negate, build in (
            (op.hosts, False, _host), (op.not_hosts, True, _host),
            (op.methods, False, _method), (op.not_methods, True, _method),
            (op.paths, False, _path), (op.not_paths, True, _path)):
        if patterns:
            rule = _or_rules([build(item) for item in patterns])
            parts.append({"not_rule": rule} if negate else rule)
    return _and_rules(parts)


def _host(pattern: Pattern) -> dict[str, Any]:
    # istiod (pilot/pkg/security/authz/matcher HostMatcher): `*` is a presence match, the
    # others match :authority case-insensitively.
    if pattern.kind == "presence":
        return {"header": {"name": ":authority", "present_match": True}}
    return {"header": {"name": ":authority",
                       "string_match": {**_string(pattern), "ignore_case": True}}}


def _method(pattern: Pattern) -> dict[str, Any]:
    if pattern.kind == "presence":
        return {"header": {"name": ":method", "present_match": True}}
    return {"header": {"name": ":method", "string_match": _string(pattern)}}


def _path(pattern: Pattern) -> dict[str, Any]:
    return {"url_path": {"path": _string(pattern)}}


def _header_condition(condition: WhenCondition) -> dict[str, Any]:
    parts = []
    for values, negate in ((condition.values, False), (condition.not_values, True)):
        if values:
            rule = _or_rules([_header(condition.header, value) for value in values])
            parts.append({"not_rule": rule} if negate else rule)
    return _and_rules(parts)


def _header(name: str, value: str) -> dict[str, Any]:
    pattern = pattern_of(value) or Pattern("exact", value)
    if pattern.kind == "presence":
        return {"header": {"name": name, "present_match": True}}
    return {"header": {"name": name, "string_match": _string(pattern)}}


# ---- principals (the peer) --------------------------------------------------------------------

def _source(source: Source) -> dict[str, Any]:
    parts = []
    for values, negate, build in (
            (source.principals, False, _principal), (source.not_principals, True, _principal),
            (source.namespaces, False, _namespace), (source.not_namespaces, True, _namespace)):
        if values:
            ids = _or_ids([build(item) for item in values])
            parts.append({"not_id": ids} if negate else ids)
    for cidrs, negate, kind in (
            (source.ip_blocks, False, "direct_remote_ip"),
            (source.not_ip_blocks, True, "direct_remote_ip"),
            (source.remote_ip_blocks, False, "remote_ip"),
            (source.not_remote_ip_blocks, True, "remote_ip")):
        if cidrs:
            ids = _or_ids([_cidr(kind, cidr) for cidr in cidrs])
            parts.append({"not_id": ids} if negate else ids)
    return _and_ids(parts)


def _peer_condition(condition: WhenCondition) -> dict[str, Any]:
    def build(value: str) -> dict[str, Any]:
        if condition.key in ("source.ip", "remote.ip"):
            kind = "direct_remote_ip" if condition.key == "source.ip" else "remote_ip"
            return _cidr(kind, value)
        pattern = pattern_of(value) or Pattern("exact", value)
        return _principal(pattern) if condition.key == "source.principal" \
            else _namespace(pattern)
    parts = []
    for values, negate in ((condition.values, False), (condition.not_values, True)):
        if values:
            ids = _or_ids([build(value) for value in values])
            parts.append({"not_id": ids} if negate else ids)
    return _and_ids(parts)


def _principal(pattern: Pattern) -> dict[str, Any]:
    """Istio principals are SPIFFE IDs without the `spiffe://` scheme."""
    if pattern.kind == "presence":
        matcher: dict[str, Any] = {"safe_regex": {"regex": ".+"}}
    elif pattern.kind == "suffix":
        matcher = {"suffix": pattern.value}
    else:
        matcher = {pattern.kind: "spiffe://" + pattern.value}
    return {"authenticated": {"principal_name": matcher}}


def _namespace(pattern: Pattern) -> dict[str, Any]:
    """A namespace is the `/ns/NAME/` part of the peer's SPIFFE ID (istiod's regex)."""
    value = re.escape(pattern.value)
    name = {"presence": "[^/]+", "prefix": value + "[^/]*", "suffix": "[^/]*" + value,
            "exact": value}[pattern.kind]
    return {"authenticated": {"principal_name": {"safe_regex": {
        "regex": f"spiffe://[^/]+/ns/{name}/.*"}}}}


def _cidr(kind: str, cidr: str) -> dict[str, Any]:
    network = ipaddress.ip_network(cidr, strict=False)
    return {kind: {"address_prefix": str(network.network_address),
                   "prefix_len": network.prefixlen}}


# ---- helpers ----------------------------------------------------------------------------------

def _string(pattern: Pattern) -> dict[str, Any]:
    if pattern.kind == "presence":
        return {"safe_regex": {"regex": ".+"}}
    return {pattern.kind: pattern.value}


def _or_rules(rules: list[dict[str, Any]]) -> dict[str, Any]:
    return rules[0] if len(rules) == 1 else {"or_rules": {"rules": rules}}


def _and_rules(rules: list[dict[str, Any]]) -> dict[str, Any]:
    if not rules:
        return ANY
    return rules[0] if len(rules) == 1 else {"and_rules": {"rules": rules}}


def _or_ids(ids: list[dict[str, Any]]) -> dict[str, Any]:
    return ids[0] if len(ids) == 1 else {"or_ids": {"ids": ids}}


def _and_ids(ids: list[dict[str, Any]]) -> dict[str, Any]:
    if not ids:
        return ANY
    return ids[0] if len(ids) == 1 else {"and_ids": {"ids": ids}}
