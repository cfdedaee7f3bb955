"""What every route kind shares (CommonRouteSpec, hostnames, backendRefs), and the spec's
limits on them (apis/v1 shared_types.go, httproute_types.go)."""

from __future__ import annotations

import re
from collections.abc import Callable

from controlplane.mesh.fields import HOSTNAME, Fields, Item
from controlplane.mesh.kinds.refs import (
    BackendRef,
    ParentRef,
    check_distinct_parents,
    parse_backend_ref,
    parse_parent_ref,
)

RULE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def parse_parents(fields: Fields) -> tuple[ParentRef, ...]:
    parents = fields.obj_list("parentRefs", parse_parent_ref, max_items=32)
    check_distinct_parents(fields, parents)
    return parents


def parse_hostnames(fields: Fields) -> tuple[str, ...]:
    return fields.text_list("hostnames", max_items=16, pattern=HOSTNAME, min_len=1, max_len=253)


def parse_backends(fields: Fields, parse: Callable[[Fields], BackendRef] = parse_backend_ref,
                   *, min_items: int = 0) -> tuple[BackendRef, ...]:
    return fields.obj_list("backendRefs", parse, max_items=16, min_items=min_items)


def rule_name(fields: Fields) -> str | None:
    return fields.text("name", min_len=1, max_len=253, pattern=RULE_NAME)


def check_rule_names(fields: Fields, names: list[str | None]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name is None:
            continue
        if name in seen:
            raise fields.context.error((*fields.path, "rules", index, "name"),
                                       "Rule name must be unique within the route")
        seen.add(name)


def simple_rules(fields: Fields, make: Callable[[str | None, tuple[BackendRef, ...], int], object]
                 ) -> tuple[object, ...]:
    """TCPRoute/TLSRoute rules: a name and backendRefs (1..16); Pointsman takes one rule, as
    TCP and TLS give nothing to choose between rules with."""
    def rule(item: Item) -> object:
        def parse(inner: Fields) -> object:
            return make(rule_name(inner), parse_backends(inner, min_items=1), item.index)
        return item.obj(parse)
    rules = fields.items("rules", rule, required=True, min_items=1, max_items=16)
    if len(rules) > 1:
        raise fields.context.error((*fields.path, "rules", 1),
                                   "more than one rule is not supported: a TCP or TLS "
                                   "connection carries nothing to choose a rule by")
    return rules
