"""`security.istio.io/v1 AuthorizationPolicy` (istio/api security/v1beta1/
authorization.proto): who may call a workload, enforced by its sidecar's inbound RBAC.

- `action`: ALLOW (default) or DENY. AUDIT and CUSTOM (and `provider`) are refused by name.
- `rules[]`: a rule matches when one of its `from` sources, one of its `to` operations and
  every `when` condition match (a missing list matches anything; `rules: [{}]` everything).
  An ALLOW policy without rules matches nothing (allows nothing).
- `from[].source`: principals, notPrincipals, namespaces, notNamespaces (from the peer's
  certificate), ipBlocks, notIpBlocks (the connection's peer), remoteIpBlocks,
  notRemoteIpBlocks (the client address after X-Forwarded-For rules). requestPrincipals
  (JWT) and serviceAccounts are refused.
- `to[].operation`: hosts, notHosts, ports, notPorts (workload ports: a Service's
  targetPort), methods, notMethods, paths, notPaths (exact, `prefix*`, `*suffix`, `*`; the
  `{*}` path templates are refused).
- `when[]`: `request.headers[NAME]`, `source.ip`, `remote.ip`, `source.namespace`,
  `source.principal`, `destination.port`, with `values` and/or `notValues`; other keys (JWT
  claims, `connection.sni`, `destination.ip`, ...) are refused naming the key.
- `selector.matchLabels` as PeerAuthentication (the Service's labels); `targetRef(s)` refused.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from controlplane.mesh.fields import Fields, Item
from controlplane.mesh.kinds.istio import Pattern, Selector, parse_selector, patterns

HEADER_KEY = re.compile(r"^request\.headers\[([^\]]*)\]$")
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # a header name (RFC 9110 5.1, 5.6.2)
PLAIN_KEYS = ("source.ip", "remote.ip", "source.namespace", "source.principal",
              "destination.port")


@dataclass(frozen=True)
class Source:
    principals: tuple[Pattern, ...] = ()
    not_principals: tuple[Pattern, ...] = ()
    namespaces: tuple[Pattern, ...] = ()
    not_namespaces: tuple[Pattern, ...] = ()
    ip_blocks: tuple[str, ...] = ()
    not_ip_blocks: tuple[str, ...] = ()
    remote_ip_blocks: tuple[str, ...] = ()
    not_remote_ip_blocks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    hosts: tuple[Pattern, ...] = ()
    not_hosts: tuple[Pattern, ...] = ()
    ports: tuple[int, ...] = ()
    not_ports: tuple[int, ...] = ()
    methods: tuple[Pattern, ...] = ()
    not_methods: tuple[Pattern, ...] = ()
    paths: tuple[Pattern, ...] = ()
    not_paths: tuple[Pattern, ...] = ()


@dataclass(frozen=True)
class WhenCondition:
    key: str  # one of PLAIN_KEYS, or "request.headers"
    header: str = ""  # the header's name (lower case) for request.headers[...]
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()


@dataclass(frozen=True)
class AuthorizationRule:
    sources: tuple[Source, ...] = ()
    operations: tuple[Operation, ...] = ()
    conditions: tuple[WhenCondition, ...] = ()


@dataclass(frozen=True)
class AuthorizationPolicySpec:
    selector: Selector = None
    action: str = "ALLOW"
    rules: tuple[AuthorizationRule, ...] = ()


def parse_authorizationpolicy_spec(fields: Fields) -> AuthorizationPolicySpec:
    selector = parse_selector(fields)
    action = fields.text("action", default="ALLOW",
                         enum=("ALLOW", "DENY", "AUDIT", "CUSTOM")) or "ALLOW"
    if action in ("AUDIT", "CUSTOM"):
        raise fields.error("action", f"{action} is not supported by Pointsman (ALLOW and "
                                     "DENY are)")
    rules = fields.obj_list("rules", _rule)
    fields.done(unsupported=("targetRef", "targetRefs", "provider"))
    return AuthorizationPolicySpec(selector, action, rules)


def _rule(fields: Fields) -> AuthorizationRule:
    sources = fields.obj_list("from", _from)
    operations = fields.obj_list("to", _to)
    conditions = fields.obj_list("when", _when)
    return AuthorizationRule(sources, operations, conditions)


def _from(fields: Fields) -> Source:
    found = fields.obj("source", _source, required=True)
    assert found is not None
    return found


def _source(fields: Fields) -> Source:
    source = Source(
        patterns(fields, "principals"), patterns(fields, "notPrincipals"),
        patterns(fields, "namespaces"), patterns(fields, "notNamespaces"),
        _cidrs(fields, "ipBlocks"), _cidrs(fields, "notIpBlocks"),
        _cidrs(fields, "remoteIpBlocks"), _cidrs(fields, "notRemoteIpBlocks"))
    fields.done(unsupported=("requestPrincipals", "notRequestPrincipals", "serviceAccounts",
                             "notServiceAccounts"))
    if source == Source():
        raise fields.error(None, "must set at least one field")
    return source


def _to(fields: Fields) -> Operation:
    found = fields.obj("operation", _operation, required=True)
    assert found is not None
    return found


def _operation(fields: Fields) -> Operation:
    operation = Operation(
        patterns(fields, "hosts"), patterns(fields, "notHosts"),
        _ports(fields, "ports"), _ports(fields, "notPorts"),
        patterns(fields, "methods"), patterns(fields, "notMethods"),
        _paths(fields, "paths"), _paths(fields, "notPaths"))
    if operation == Operation():
        raise fields.error(None, "must set at least one field")
    return operation


def _paths(fields: Fields, key: str) -> tuple[Pattern, ...]:
    found = patterns(fields, key)
    for index, item in enumerate(found):
        if "{" in item.value:
            raise fields.context.error((*fields.at(key), index),
                                       "path templates ({*}, {**}) are not supported")
    return found


def _cidrs(fields: Fields, key: str) -> tuple[str, ...]:
    return fields.items(key, lambda item: item.cidr())


def _ports(fields: Fields, key: str) -> tuple[int, ...]:
    def parse(item: Item) -> int:
        text = item.value if isinstance(item.value, str) else str(item.value)
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise item.error(f"invalid port {item.value!r} (1-65535)")
        return int(text)
    return fields.items(key, parse)


def _when(fields: Fields) -> WhenCondition:
    key = fields.req_str("key", min_len=1)
    values = fields.text_list("values", min_len=1)
    not_values = fields.text_list("notValues", min_len=1)
    if not values and not not_values:
        raise fields.error(None, "needs values or notValues")
    header = HEADER_KEY.match(key)
    if header is not None and not TOKEN.match(header.group(1)):
        raise fields.error("key", f"invalid header name {header.group(1)!r}")
    if header is not None:
        for index, value in enumerate((*values, *not_values)):
            if value != "*" and "*" in value[1:-1]:
                raise fields.error("values" if index < len(values) else "notValues",
                                   f"invalid value {value!r}")
        return WhenCondition("request.headers", header.group(1).lower(), values, not_values)
    if key not in PLAIN_KEYS:
        raise fields.error("key", f"{key!r} is not supported by Pointsman (supported: "
                                  f"request.headers[NAME], {', '.join(PLAIN_KEYS)})")
    _check_values(fields, key, values, "values")
    _check_values(fields, key, not_values, "notValues")
    return WhenCondition(key, "", values, not_values)


def _check_values(fields: Fields, key: str, values: tuple[str, ...], name: str) -> None:
    for index, value in enumerate(values):
        where = (*fields.at(name), index)
        if key in ("source.ip", "remote.ip"):
            _cidr_at(fields, where, value)
        elif key == "destination.port" and not (value.isdigit() and 1 <= int(value) <= 65535):
            raise fields.context.error(where, f"invalid port {value!r} (1-65535)")


def _cidr_at(fields: Fields, where: tuple[str | int, ...], value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError as error:
        raise fields.context.error(where, f"invalid IP or CIDR {value!r}") from error
