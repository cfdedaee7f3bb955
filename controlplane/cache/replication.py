"""A cache's commits as plain data, and their replay into another cache: how worker processes
(controlplane/workers.py) hold the same resources and views as the process that loads them.

`encode(committed)` turns a commit (`ResourceCache.listen`, or `ResourceCache.state()` for a
replica that starts) into picklable data holding each resource's serialised bytes; `apply(cache,
change)` replays it in one transaction. Bytes go as they are: a replica neither validates nor
serialises again, and a resource keeps its version (the hash of those bytes), so a client that
reconnects to another worker holds the same versions. Another replica kind (etcd watches, for
instance) would feed `apply` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controlplane.cache.resource import CachedResource
from controlplane.cache.store import Committed, ResourceCache, ViewSpec

# type_url -> name -> bytes (None: deleted)
SharedChange = dict[str, dict[str, bytes | None]]
# key -> (own: type_url -> name -> bytes, shared scope: type_url -> names | None) | None (removed)
ViewChange = dict[str, tuple[dict[str, dict[str, bytes]], dict[str, tuple[str, ...] | None]]
                  | None]
Change = tuple[SharedChange, ViewChange]


def encode(committed: Committed) -> Change:
    shared: SharedChange = {
        type_url: {name: None if item is None else item.value for name, item in items.items()}
        for type_url, items in committed.shared.items()}
    views: ViewChange = {key: None if spec is None else _spec(spec)
                         for key, spec in committed.views.items()}
    return shared, views


def _spec(spec: ViewSpec) -> tuple[dict[str, dict[str, bytes]], dict[str, tuple[str, ...] | None]]:
    own = {type_url: {item.name: item.value for item in items}
           for type_url, items in spec.own.items()}
    scope = {type_url: None if names is None else tuple(sorted(names))
             for type_url, names in spec.shared.items()}
    return own, scope


def apply(cache: ResourceCache, change: Change) -> None:
    shared, views = change
    with cache.transaction():
        for type_url, items in shared.items():
            present = {name: CachedResource.of_bytes(type_url, name, value)
                       for name, value in items.items() if value is not None}
            if present:
                cache.put_resources(type_url, present)
            gone = [name for name, value in items.items() if value is None]
            if gone:
                cache.delete_resources(type_url, gone)
        for key, spec in views.items():
            if spec is None:
                cache.remove_view(key)
                continue
            own, scope = spec
            cache.set_view(key, own=_packed(own), shared=dict(scope))


def _packed(own: Mapping[str, Mapping[str, bytes]]) -> dict[str, Any]:
    return {type_url: {name: CachedResource.of_bytes(type_url, name, value)
                       for name, value in items.items()}
            for type_url, items in own.items()}
