"""`gateway.networking.k8s.io/v1beta1 ReferenceGrant` (also v1): lets objects of the `from`
kinds in the `from` namespaces refer to objects of the `to` kinds in the grant's namespace
(a route to a Service elsewhere, a Gateway to a Secret elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import DNS_LABEL, Fields
from controlplane.mesh.kinds.refs import GROUP, KIND, normal_group


@dataclass(frozen=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True)
class GrantTo:
    group: str
    kind: str
    name: str | None


@dataclass(frozen=True)
class ReferenceGrantSpec:
    grant_from: tuple[GrantFrom, ...]
    grant_to: tuple[GrantTo, ...]

    def allows(self, group: str, kind: str, namespace: str, to_group: str, to_kind: str,
               to_name: str) -> bool:
        sources = any(item.group == group and item.kind == kind and item.namespace == namespace
                      for item in self.grant_from)
        targets = any(item.group == to_group and item.kind == to_kind
                      and item.name in (None, to_name) for item in self.grant_to)
        return sources and targets


def parse_referencegrant_spec(fields: Fields) -> ReferenceGrantSpec:
    return ReferenceGrantSpec(
        grant_from=fields.obj_list("from", _from, required=True, min_items=1, max_items=16),
        grant_to=fields.obj_list("to", _to, required=True, min_items=1, max_items=16))


def _from(fields: Fields) -> GrantFrom:
    return GrantFrom(normal_group(fields.req_str("group", max_len=253, pattern=GROUP)),
                     fields.req_str("kind", min_len=1, max_len=63, pattern=KIND),
                     fields.req_str("namespace", min_len=1, max_len=63, pattern=DNS_LABEL))


def _to(fields: Fields) -> GrantTo:
    return GrantTo(normal_group(fields.req_str("group", max_len=253, pattern=GROUP)),
                   fields.req_str("kind", min_len=1, max_len=63, pattern=KIND),
                   fields.text("name", min_len=1, max_len=253))
