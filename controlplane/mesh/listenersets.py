"""ListenerSets merged into their Gateways (apis/v1 listenerset_types.go, GEP-1713).

A ListenerSet is Accepted when its parentRef names a Gateway that exists and whose
`allowedListeners.namespaces` admits the ListenerSet's namespace (None, the default, admits
none: `Accepted=False/NotAllowed`). Its listeners are then served by the Gateway's proxy as
if they were the Gateway's, under the name `NAMESPACE/LISTENERSET/LISTENER` (so two sets may
use the same listener name); `origin` and `entry` on each say where it came from. The
Gateway's own listeners take precedence over the sets', and the sets among themselves go by
creationTimestamp then namespace/name: a listener that conflicts with one before it is
Conflicted, not the earlier one (controlplane.mesh.resolve `_check_gateways`). A set whose
listeners are all invalid is `Accepted=False/ListenersNotValid`.

A route attaches to a ListenerSet's listeners only with a parentRef of kind ListenerSet; a
parentRef to the Gateway attaches to the Gateway's own listeners.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from controlplane.mesh.kinds.gateway import GatewayListener, GatewaySpec
from controlplane.mesh.kinds.listenerset import ListenerSetSpec
from controlplane.mesh.kinds.refs import GATEWAY_GROUP
from controlplane.mesh.objects import MeshObject, ObjectKey


def merged_name(listener_set: ObjectKey, entry: str) -> str:
    return f"{listener_set.namespace}/{listener_set.name}/{entry}"


def parent_of(listener_set: MeshObject) -> ObjectKey | None:
    spec: ListenerSetSpec = listener_set.spec
    if spec.parent_group != GATEWAY_GROUP or spec.parent_kind != "Gateway":
        return None
    return ObjectKey("Gateway", spec.parent_namespace or listener_set.namespace,
                     spec.parent_name)


def admitted(gateway: MeshObject, listener_set: MeshObject, labels: dict[str, str]) -> bool:
    """allowedListeners.namespaces of the Gateway admits the ListenerSet's namespace."""
    spec: GatewaySpec = gateway.spec
    if spec.listener_sets_from == "All":
        return True
    if spec.listener_sets_from == "Same":
        return listener_set.namespace == gateway.namespace
    if spec.listener_sets_from == "Selector":
        return spec.listener_sets_selector is not None and \
            spec.listener_sets_selector.matches(labels)
    return False


def with_listener_sets(gateway: MeshObject, sets: list[MeshObject]) -> MeshObject:
    """The Gateway as its proxy serves it: its listeners, then the accepted sets' (in
    precedence order), with a revision that changes when any of them does."""
    merged: list[GatewayListener] = list(gateway.spec.listeners)
    for listener_set in sets:
        merged += [replace(item, name=merged_name(listener_set.key, item.name),
                           origin=listener_set.key, entry=item.name)
                   for item in listener_set.spec.listeners]
    digest = hashlib.blake2b("|".join([gateway.revision, *(item.revision for item in sets)])
                             .encode(), digest_size=8).hexdigest()
    return replace(gateway, spec=replace(gateway.spec, listeners=tuple(merged)),
                   revision=digest)
