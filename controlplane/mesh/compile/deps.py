"""Which mesh objects each compiled resource was made from, read off the compiler's memo.

Every unit records what it read (memo.View): objects by key, attachments and backends (which
name their route), policies, other units. The objects a unit depends on are the keys in
those reads plus, through `("unit", key)` reads, its children's. A resource belongs to the
units whose output holds it; a cluster also depends on the units that chose its settings (the
routes and policies behind a ClusterUse). Nothing is listed by hand: what a unit read is what
it came from. The management API uses this to tell which objects a sidecar's NACK concerns,
and which sidecars an object concerns (Programmed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from controlplane.cache import CachedResource
from controlplane.mesh.compile.http_routes import ClusterUse
from controlplane.mesh.compile.memo import Memo
from controlplane.mesh.objects import ObjectKey

ResourceId = tuple[str, str, str]  # type URL, name, version

_OBJECT_READS = {"get": 1}  # read name -> index where (kind, namespace, name) starts


class Provenance:
    """Objects behind resources, for one memo; the index follows the memo's generation. Give
    a function returning the memo to follow a MeshCache, which swaps in a new compiler (and
    memo) with each mesh prepared off the loop."""

    def __init__(self, memo: Memo | Callable[[], Memo]) -> None:
        self._source: Callable[[], Memo] = memo if callable(memo) else (lambda: memo)
        self._indexed: Memo | None = None
        self._generation = -1
        self._units: dict[ResourceId, set[Hashable]] = {}
        self._users: dict[str, set[Hashable]] = {}  # cluster name -> units choosing it
        self._objects: dict[tuple[Hashable, int], frozenset[ObjectKey]] = {}

    def objects_of(self, resource: CachedResource) -> frozenset[ObjectKey]:
        self._index()
        found: set[ObjectKey] = set()
        for key in self._units.get(_identity(resource), ()):
            found |= self._unit_objects(key)
        if resource.name in self._users:
            for key in self._users[resource.name]:
                found |= self._unit_objects(key)
        return frozenset(found)

    def objects_of_all(self, resources: Iterable[CachedResource]) -> frozenset[ObjectKey]:
        found: set[ObjectKey] = set()
        for resource in resources:
            found |= self.objects_of(resource)
        return frozenset(found)

    @property
    def memo(self) -> Memo:
        return self._source()

    def _index(self) -> None:
        if self._indexed is self.memo and self._generation == self.memo.generation:
            return
        if self._indexed is not self.memo:
            self._objects = {}  # versions are numbered per memo
            self._indexed = self.memo
        units: dict[ResourceId, set[Hashable]] = defaultdict(set)
        users: dict[str, set[Hashable]] = defaultdict(set)
        for key, entry in self.memo.entries.items():
            for item in _contents(_whole_gateway(key, entry.value)):
                if isinstance(item, CachedResource):
                    units[_identity(item)].add(key)
                elif isinstance(item, ClusterUse):
                    users[item.cluster_name].add(key)
        self._units, self._users = dict(units), dict(users)
        live = {(key, entry.version) for key, entry in self.memo.entries.items()}
        self._objects = {item: value for item, value in self._objects.items() if item in live}
        self._generation = self.memo.generation

    def _unit_objects(self, key: Hashable) -> frozenset[ObjectKey]:
        entry = self.memo.entries.get(key)
        if entry is None:
            return frozenset()
        memo_key = (key, entry.version)
        found = self._objects.get(memo_key)
        if found is not None:
            return found
        self._objects[memo_key] = frozenset()  # a cycle (none expected) stops here
        keys: set[ObjectKey] = set()
        for read, seen in entry.reads.items():
            if read[0] == "unit":
                keys |= self._unit_objects(read[1])
                continue
            if read[0] in _OBJECT_READS and len(read) == 4:
                keys.add(ObjectKey(*read[1:]))
            keys.update(_keys_in(read))
            keys.update(_keys_in(seen))
        found = self._objects[memo_key] = frozenset(keys)
        return found


def _whole_gateway(key: Hashable, value: Any) -> Any:
    """A Gateway is compiled as one unit (compiler.MeshCompiler._gateway) returning a
    ResourceSet: each of its resources comes from all that unit read. (A sidecar's
    ResourceSets gather other units' resources, which name their own sources.)"""
    if isinstance(key, tuple) and key[:1] == ("gateway",) and hasattr(value, "by_type"):
        return [item for items in value.by_type.values() for item in items.values()]
    return value


def _identity(resource: CachedResource) -> ResourceId:
    return (resource.type_url, resource.name, resource.version)


def _contents(value: Any, depth: int = 0) -> Iterable[Any]:
    """CachedResources and ClusterUses inside a unit's output (resources, parts, ports)."""
    if depth > 6:
        return
    if isinstance(value, CachedResource | ClusterUse):
        yield value
    elif isinstance(value, tuple | list | frozenset | set):
        for item in value:
            yield from _contents(item, depth + 1)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from _contents(getattr(value, name), depth + 1)


def _keys_in(value: Any, depth: int = 0) -> Iterable[ObjectKey]:
    """ObjectKeys inside a read or its fingerprint (nested tuples)."""
    if isinstance(value, ObjectKey):
        yield value
    elif isinstance(value, tuple | list) and depth < 8:
        for item in value:
            yield from _keys_in(item, depth + 1)
