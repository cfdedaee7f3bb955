"""`gateway.networking.k8s.io/v1 ListenerSet` (apis/v1 listenerset_types.go, GEP-1713):
listeners added to a Gateway from another object. `parentRef` names the Gateway (group
gateway.networking.k8s.io, kind Gateway; `namespace` defaults to the ListenerSet's);
`listeners` are ListenerEntry, read as a Gateway's listeners are. Whether the Gateway takes
them (its `allowedListeners`), their conflicts and their routes are resolved by
controlplane.mesh.listenersets.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import DNS_LABEL, Fields
from controlplane.mesh.kinds.gateway import GatewayListener, parse_listeners
from controlplane.mesh.kinds.refs import GATEWAY_GROUP, GROUP, KIND, normal_group


@dataclass(frozen=True)
class ListenerSetSpec:
    parent_group: str
    parent_kind: str
    parent_name: str
    parent_namespace: str | None
    listeners: tuple[GatewayListener, ...]


def parse_listenerset_spec(fields: Fields) -> ListenerSetSpec:
    parent = fields.obj("parentRef", _parent, required=True)
    assert parent is not None
    return ListenerSetSpec(*parent, parse_listeners(fields))


def _parent(fields: Fields) -> tuple[str, str, str, str | None]:
    group = normal_group(fields.text("group", default=GATEWAY_GROUP, max_len=253,
                                     pattern=GROUP) or "")
    kind = fields.text("kind", default="Gateway", min_len=1, max_len=63, pattern=KIND)
    return (group, kind or "Gateway", fields.req_str("name", min_len=1, max_len=253),
            fields.text("namespace", min_len=1, max_len=63, pattern=DNS_LABEL))
