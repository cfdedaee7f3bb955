"""A `View`: what one node (or node group) sees, every type consistent with the others.

A view is immutable and made of references to `TypeContent` (controlplane/cache/content.py):
the shared sets themselves when the view has nothing of its own for a type, an `Overlay`
otherwise. Streams resolve their node's view when they need it; a view that did not change is
the same object, so what streams memoise on it stays valid.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType

from google.protobuf.message import Message

from controlplane.cache.content import ResourceSet, TypeContent, empty
from controlplane.cache.resource import CachedResource, combine
from controlplane.resources import PUSH_ORDER

TYPE_URLS = tuple(kind.type_url for kind in PUSH_ORDER)


class View:
    """Every type's content for one view; `version` names the whole."""

    def __init__(self, types: Mapping[str, TypeContent]) -> None:
        self.types: Mapping[str, TypeContent] = MappingProxyType(
            {type_url: types.get(type_url) or empty(type_url) for type_url in TYPE_URLS})

    def __repr__(self) -> str:
        return f"View({self.version}, {self.count()} resources)"

    @functools.cached_property
    def version(self) -> str:
        return combine(*(self.types[type_url].key for type_url in TYPE_URLS))

    @classmethod
    def build(cls, resources: Mapping[str, Mapping[str, Message]]) -> View:
        """`resources[type_url][name] -> message`, validated beforehand (sources/): a view of
        its own (tests, and sources that publish whole snapshots)."""
        return cls({type_url: ResourceSet(type_url, {
            name: CachedResource.of(type_url, name, message)
            for name, message in resources.get(type_url, {}).items()})
            for type_url in TYPE_URLS})

    @classmethod
    def empty(cls) -> View:
        return cls({})

    def of_type(self, type_url: str) -> TypeContent:
        return self.types.get(type_url) or empty(type_url)

    def select(self, type_url: str, names: frozenset[str]) -> TypeContent:
        """The existing resources among `names` (memoised on the shared sets)."""
        return self.of_type(type_url).select(names)

    def count(self) -> int:
        return sum(len(content) for content in self.types.values())


EMPTY_VIEW = View.empty()
