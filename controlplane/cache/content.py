"""What one type holds in one view: a `ResourceSet` (immutable, shared by every view and
stream that sees it) or an `Overlay` (a view's own resources on top of a shared set).

An overlay holds references, never copies: its size is that of its own resources, whatever the
size of the shared set under it. Everything derived from a set's content is computed once per
set object and shared: its version, its sorted order, its encoded `resources` fields (`chunk`),
the selections of named subscriptions, the names changed since an older set (delta xDS).
Overlays answer from their parts: an overlay's encoded form is the shared chunk (minus the
names it replaces) followed by its own, so a thousand per-workload views of a 1 MB shared set
keep one encoded copy of it.
"""

from __future__ import annotations

import functools
import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from controlplane.cache.resource import CachedResource, combine, set_version

MEMO_LIMIT = 1024  # distinct selections (or diffs) remembered per set; cleared past it


_MISSING = object()


def _remember(memo: dict[Any, Any], key: Any, value: Any) -> Any:
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


class TypeContent(ABC):
    """Resources of one type as one view sees them (or a selection of them), immutable.

    Iterating yields the resources sorted by name; `resources` is the name -> resource mapping.
    `key` names exactly this content; `version` is the type version reported to clients (a
    selection reports the version of the type it was selected from).
    """

    type_url: str

    @property
    @abstractmethod
    def key(self) -> str: ...

    @property
    def version(self) -> str:
        return self.key

    @abstractmethod
    def get(self, name: str) -> CachedResource | None: ...

    @abstractmethod
    def names(self) -> frozenset[str] | Any: ...

    @abstractmethod
    def __iter__(self) -> Iterator[CachedResource]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def chunks(self) -> list[bytes]:
        """The encoded `resources` fields of a DiscoveryResponse holding this content."""

    @abstractmethod
    def select(self, names: frozenset[str]) -> TypeContent:
        """The existing resources among `names`."""

    @abstractmethod
    def _candidates_since(self, older: TypeContent) -> Any:
        """Names that may differ from `older` (a superset of those that do)."""

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    @property
    def resources(self) -> Mapping[str, CachedResource]:
        return _ContentMapping(self)

    @property
    def ordered(self) -> tuple[CachedResource, ...]:
        return tuple(self)

    def changed_since(self, older: TypeContent) -> frozenset[str]:
        """Names added, removed or changed since `older`; computed once per pair of contents
        and shared by every stream moving from one to the other."""
        memo = self._diffs
        found = memo.get(older.key)
        if found is None:
            found = frozenset(name for name in self._candidates_since(older)
                              if _version_of(self, name) != _version_of(older, name))
            _remember(memo, older.key, found)
        return found

    def changes_since(self, older: TypeContent, version: str) -> ResourceSet:
        """The resources added or changed since `older` (names only removed are left out), as
        a set reporting `version`; computed once per pair of contents and shared by every
        stream moving from one to the other (SotW partial updates: protocol/sotw.py)."""
        memo = self._changes
        key = (older.key, version)
        found = memo.get(key)
        if found is None:
            present = {name: resource for name in self.changed_since(older)
                       if (resource := self.get(name)) is not None}
            found = _remember(memo, key, ResourceSet(self.type_url, present, version=version))
        return found

    def memoised(self, key: Any, make: Callable[[], Any]) -> Any:
        """A value derived from this content and `key` alone, made once and shared by every
        stream that needs it (delta's first plans: protocol/delta.py)."""
        memo = self._memoised
        found = memo.get(key, _MISSING)
        if found is _MISSING:
            found = _remember(memo, key, make())
        return found

    @functools.cached_property
    def _memoised(self) -> dict[Any, Any]:
        return {}

    @functools.cached_property
    def _diffs(self) -> dict[str, frozenset[str]]:
        return {}

    @functools.cached_property
    def _changes(self) -> dict[tuple[str, str], ResourceSet]:
        return {}


def _version_of(content: TypeContent, name: str) -> str | None:
    resource = content.get(name)
    return resource.version if resource is not None else None


class ResourceSet(TypeContent):
    """Named resources of one type; the unit that views share."""

    def __init__(self, type_url: str, by_name: Mapping[str, CachedResource],
                 version: str | None = None) -> None:
        self.type_url = type_url
        self._by_name: dict[str, CachedResource] = dict(sorted(by_name.items()))
        self._version = version  # a selection reports its type's version
        self._selections: dict[frozenset[str], ResourceSet] = {}
        self._without: dict[frozenset[str], ResourceSet] = {}

    def __repr__(self) -> str:
        return f"ResourceSet({self.type_url.rsplit('.', 1)[-1]}, {len(self)}, {self.key})"

    @functools.cached_property
    def key(self) -> str:  # type: ignore[override]
        return set_version(self._by_name.values())

    @property
    def version(self) -> str:
        return self._version or self.key

    def get(self, name: str) -> CachedResource | None:
        return self._by_name.get(name)

    def names(self) -> Any:
        return self._by_name.keys()

    def __iter__(self) -> Iterator[CachedResource]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    @property
    def resources(self) -> Mapping[str, CachedResource]:
        return MappingProxyType(self._by_name)

    @functools.cached_property
    def ordered(self) -> tuple[CachedResource, ...]:  # type: ignore[override]
        return tuple(self._by_name.values())

    @functools.cached_property
    def chunk(self) -> bytes:
        """Every resource as a `resources` field, in name order: built once per set."""
        return b"".join(resource.sotw_field for resource in self._by_name.values())

    def chunks(self) -> list[bytes]:
        return [self.chunk] if self._by_name else []

    def select(self, names: frozenset[str]) -> ResourceSet:
        """Memoised per set and name set: streams asking for the same names share it."""
        found = self._selections.get(names)
        if found is None:
            chosen = {name: self._by_name[name] for name in names if name in self._by_name}
            found = (self if len(chosen) == len(self._by_name)
                     else ResourceSet(self.type_url, chosen, version=self.version))
            _remember(self._selections, names, found)
        return found

    def without(self, names: frozenset[str]) -> ResourceSet:
        """This set minus `names` (the shared part of an overlay that replaces them)."""
        found = self._without.get(names)
        if found is None:
            kept = {name: item for name, item in self._by_name.items() if name not in names}
            found = _remember(self._without, names, ResourceSet(self.type_url, kept))
        return found

    def _candidates_since(self, older: TypeContent) -> Any:
        return self._by_name.keys() | set(older.names())

    def replaced(self, changes: Mapping[str, CachedResource | None]) -> ResourceSet:
        """A new set with `changes` applied (None removes the name)."""
        updated = dict(self._by_name)
        for name, resource in changes.items():
            if resource is None:
                updated.pop(name, None)
            else:
                updated[name] = resource
        return ResourceSet(self.type_url, updated)


class Overlay(TypeContent):
    """A view's own resources on top of shared ones: own replace shared of the same name."""

    def __init__(self, shared: ResourceSet, own: ResourceSet) -> None:
        self.type_url = own.type_url
        self.shared = shared
        self.own = own
        self.hidden = frozenset(name for name in own.names() if shared.get(name) is not None)

    def __repr__(self) -> str:
        return f"Overlay({self.shared!r} + {self.own!r})"

    @functools.cached_property
    def key(self) -> str:  # type: ignore[override]
        return combine(self.shared.key, self.own.key)

    def get(self, name: str) -> CachedResource | None:
        return self.own.get(name) or self.shared.get(name)

    def names(self) -> Any:
        return self.shared.names() | self.own.names()

    def __iter__(self) -> Iterator[CachedResource]:
        shared = (item for item in self.shared if item.name not in self.hidden)
        return heapq.merge(shared, iter(self.own), key=lambda item: item.name)

    def __len__(self) -> int:
        return len(self.shared) + len(self.own) - len(self.hidden)

    def chunks(self) -> list[bytes]:
        shared = self.shared.without(self.hidden) if self.hidden else self.shared
        return shared.chunks() + self.own.chunks()

    def select(self, names: frozenset[str]) -> TypeContent:
        own = {item.name: item for item in self.own if item.name in names}
        shared = self.shared.select(names)
        if not own:
            return shared
        return Overlay(shared, ResourceSet(self.type_url, own))

    def _candidates_since(self, older: TypeContent) -> Any:
        if isinstance(older, Overlay):
            moved = (self.shared.changed_since(older.shared) if self.shared is not older.shared
                     else frozenset())
            return moved | self.own.names() | older.own.names()
        if isinstance(older, ResourceSet) and older is self.shared:
            return self.own.names()
        return self.names() | set(older.names())


class _ContentMapping(Mapping[str, CachedResource]):
    """`TypeContent.resources` for overlays: a read-only name -> resource view, no copy."""

    def __init__(self, content: TypeContent) -> None:
        self._content = content

    def __getitem__(self, name: str) -> CachedResource:
        found = self._content.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return (item.name for item in self._content)

    def __len__(self) -> int:
        return len(self._content)


def empty(type_url: str) -> ResourceSet:
    return ResourceSet(type_url, {})
