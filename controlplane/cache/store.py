"""`ResourceCache`: shared resources, per-node views built on them, and change notifications.

Writers (the file source's node groups, the mesh compiler's per-sidecar output) use one API:

    cache.put_resources(type_url, {name: message})    shared; serialised once per version
    cache.set_resources(type_url, {name: message})    the same, and every other name is removed
    cache.delete_resources(type_url, names)
    cache.set_view(key, own={type_url: {name: message}}, shared={type_url: names})
    cache.remove_view(key)
    with cache.transaction(): ...                      readers see all of it at once, or none

`own[type_url]` may also be a `TypeContent` already packed (a `ResourceSet` or `Overlay` the
writer shares between views, as the mesh compiler's parts are: sources/mesh.py): it is held by
reference, never copied.

A view is its own resources plus references to the shared ones (all of a type by default, or
only `shared[type_url]`'s names; own replace shared of the same name). Messages are serialised
on the way in, once per resource version: a message that is the same object as, or has the same
bytes as, the one already held keeps the held `CachedResource` (and so its version and every
memo built on it). Values may also be `CachedResource`s, already packed (a worker process
receives resources that way). Validation is the writer's: the cache holds what it is given.

Readers: `view_for(node)` is the view of the first of the node's candidate keys that exists
(`candidates`, by default node id, then node cluster, then the default view "": the file
source's node groups; the mesh compiler may pass its own, from node metadata say).
`subscribe(node, callback)` calls `callback()` after a commit that changed the view the node
resolves to, or created a view it would prefer: a change to one view wakes only the streams of
that view. `watch(callback)` hears every commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Union

from envoy.config.core.v3 import base_pb2
from google.protobuf.message import Message

from controlplane.cache.content import Overlay, ResourceSet, TypeContent, empty
from controlplane.cache.resource import CachedResource
from controlplane.cache.view import EMPTY_VIEW, TYPE_URLS, View

DEFAULT_GROUP = ""
Value = Union[Message, CachedResource]  # noqa: UP007 (a runtime alias)
Candidates = Callable[[base_pb2.Node], tuple[str, ...]]


def node_group_candidates(node: base_pb2.Node) -> tuple[str, ...]:
    """A folder named after the node id wins, then one named after its cluster, then the
    shared view (docs/controlplane.md, "Node scoping")."""
    return (*(key for key in (node.id, node.cluster) if key), DEFAULT_GROUP)


def group_for(node: base_pb2.Node, groups: Iterable[str]) -> str:
    names = set(groups)
    for key in node_group_candidates(node):
        if key in names:
            return key
    return DEFAULT_GROUP


@dataclass(frozen=True)
class ViewSpec:
    """What a view is made of: its own sets, and per type the shared names it sees (None:
    all of them; a type missing from `shared` sees all)."""

    own: Mapping[str, TypeContent] = field(default_factory=dict)
    shared: Mapping[str, frozenset[str] | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Committed:
    """What one commit changed: shared resources (None: deleted) and view specs (None:
    removed)."""

    shared: Mapping[str, Mapping[str, CachedResource | None]]
    views: Mapping[str, ViewSpec | None]


class _Watch:
    __slots__ = ("callback", "keys", "node")

    def __init__(self, node: base_pb2.Node, callback: Callable[[], None]) -> None:
        self.node = node
        self.callback = callback
        self.keys: tuple[str, ...] = ()


class ResourceCache:
    """Shared resource sets, views on them, and who to wake when a view changes."""

    def __init__(self, candidates: Candidates = node_group_candidates) -> None:
        self.candidates = candidates
        self._pool: dict[str, ResourceSet] = {type_url: empty(type_url)
                                              for type_url in TYPE_URLS}
        self._specs: dict[str, ViewSpec] = {}
        self._views: dict[str, View] = {}
        self._watches: dict[str, set[_Watch]] = {}
        self._global: dict[int, Callable[[], None]] = {}
        self._listeners: dict[int, Callable[[Committed], None]] = {}
        self._next_watch = 0
        self._depth = 0
        self._dirty_types: dict[str, set[str]] = {}
        self._dirty_views: set[str] = set()
        self.generation = 0  # commits so far (the default view below is not one)
        self.serialised = 0  # resources serialised so far (each version once)
        self.set_view(DEFAULT_GROUP)
        self.generation = 0

    def __repr__(self) -> str:
        return (f"ResourceCache({len(self._views)} views, "
                f"{sum(len(item) for item in self._pool.values())} shared resources, "
                f"{sum(len(item) for item in self._watches.values())} watches)")

    # ---- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self, *, quiet: bool = False) -> Iterator[None]:
        """Writes inside become visible together when the outermost transaction ends; if it
        ends with an exception, none of them does (a rejected change changes nothing).

        A quiet commit wakes the subscriptions of the views it changed, and listeners, but not
        `watch` callbacks: for a view made when its node connects (the mesh's), which changes
        nobody's configuration."""
        outermost = self._depth == 0
        saved = (dict(self._pool), dict(self._specs)) if outermost else None
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if saved is not None:
                self._pool, self._specs = saved
                self._dirty_types.clear()
                self._dirty_views.clear()
            raise
        self._depth -= 1
        if outermost:
            self._commit(quiet=quiet)

    def put_resources(self, type_url: str, resources: Mapping[str, Value]) -> None:
        self._change_pool(type_url, resources, exact=False)

    def set_resources(self, type_url: str, resources: Mapping[str, Value]) -> None:
        self._change_pool(type_url, resources, exact=True)

    def delete_resources(self, type_url: str, names: Iterable[str]) -> None:
        pool = self._pool[type_url]
        gone = {name: None for name in names if pool.get(name) is not None}
        if gone:
            self._pool[type_url] = pool.replaced(gone)
            self._dirty_types.setdefault(type_url, set()).update(gone)
        self._maybe_commit()

    def set_view(self, key: str, own: Mapping[str, Mapping[str, Value] | TypeContent] | None = None,
                 shared: Mapping[str, Iterable[str] | None] | None = None) -> None:
        previous = self._specs.get(key)
        sets = {}
        for type_url, resources in (own or {}).items():
            held = previous.own.get(type_url) if previous is not None else None
            sets[type_url] = self._own_set(type_url, resources, held)
        scope = {type_url: None if names is None else frozenset(names)
                 for type_url, names in (shared or {}).items()}
        self._specs[key] = ViewSpec({t: s for t, s in sets.items() if len(s)}, scope)
        self._dirty_views.add(key)
        self._maybe_commit()

    def remove_view(self, key: str) -> None:
        if self._specs.pop(key, None) is not None:
            self._dirty_views.add(key)
        self._maybe_commit()

    # ---- reading --------------------------------------------------------------------------

    @property
    def views(self) -> Mapping[str, View]:
        return self._views

    def shared(self, type_url: str) -> ResourceSet:
        return self._pool[type_url]

    def view_for(self, node: base_pb2.Node) -> View:
        for key in self.candidates(node):
            found = self._views.get(key)
            if found is not None:
                return found
        return EMPTY_VIEW

    def key_for(self, node: base_pb2.Node) -> str | None:
        return next((key for key in self.candidates(node) if key in self._views), None)

    def subscribe(self, node: base_pb2.Node, callback: Callable[[], None]
                  ) -> Callable[[], None]:
        """Call `callback` after each commit that changes what `node` sees; returns cancel."""
        watch = _Watch(node, callback)
        self._register(watch)

        def cancel() -> None:
            self._unregister(watch)
        return cancel

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every commit; returns the function that cancels the watch."""
        key = self._next_watch
        self._next_watch += 1
        self._global[key] = callback

        def cancel() -> None:
            self._global.pop(key, None)
        return cancel

    # ---- whole snapshots per group (sources that publish them, tests) ---------------------

    @property
    def groups(self) -> Mapping[str, View]:
        return self._views

    def snapshot_for(self, node: base_pb2.Node) -> View:
        return self.view_for(node)

    def set_snapshots(self, groups: Mapping[str, View]) -> None:
        """Replace every view by these self-contained ones (nothing shared)."""
        if DEFAULT_GROUP not in groups:
            raise ValueError("the default group ('') must always have a snapshot")
        nothing: dict[str, Iterable[str] | None] = {type_url: () for type_url in TYPE_URLS}
        with self.transaction():
            for key in [key for key in self._specs if key not in groups]:
                self.remove_view(key)
            for key, view in groups.items():
                self.set_view(key, own=dict(view.types), shared=nothing)

    def listen(self, callback: Callable[[Committed], None]) -> Callable[[], None]:
        """Call `callback(committed)` after every commit that changed anything, with what it
        changed (replication to worker processes: controlplane/cache/replication.py)."""
        key = self._next_watch
        self._next_watch += 1
        self._listeners[key] = callback

        def cancel() -> None:
            self._listeners.pop(key, None)
        return cancel

    def state(self) -> Committed:
        """Everything held, as one change from an empty cache (a new replica starts from it)."""
        return Committed({type_url: {item.name: item for item in pool}
                          for type_url, pool in self._pool.items() if len(pool)},
                         dict(self._specs))

    def resolve_again(self) -> None:
        """Resolve every subscription's node again, and wake those that resolve to another
        view now: for a writer whose `candidates` changed (a new mesh makes a node a member,
        or no longer one)."""
        moved = []
        for watch in {watch for watches in self._watches.values() for watch in watches}:
            before = watch.keys
            self._register(watch)
            if watch.keys != before:
                moved.append(watch)
        for watch in moved:
            watch.callback()

    def watched(self, key: str) -> bool:
        """Whether a subscription resolves to view `key`, or would (a node of it is
        connected)."""
        return bool(self._watches.get(key))

    @property
    def watcher_count(self) -> int:
        return len(self._global) + len({id(watch) for watches in self._watches.values()
                                        for watch in watches})

    # ---- internals ------------------------------------------------------------------------

    def _pack(self, type_url: str, name: str, value: Value,
              held: CachedResource | None) -> CachedResource:
        """`value` as a CachedResource, keeping `held` when the content is the same."""
        if isinstance(value, CachedResource):
            return held if value.same_content(held) else value  # type: ignore[return-value]
        if held is not None and held.source is value:
            return held
        packed = CachedResource.of(type_url, name, value)
        self.serialised += 1
        if held is not None and packed.same_content(held):
            held.source = value
            return held
        packed.source = value
        return packed

    def _own_set(self, type_url: str, resources: Mapping[str, Value] | TypeContent,
                 held: TypeContent | None) -> TypeContent:
        if isinstance(resources, TypeContent):
            return resources  # already packed and shared: held by reference
        packed = {name: self._pack(type_url, name, value,
                                   held.get(name) if held is not None else None)
                  for name, value in resources.items()}
        if held is not None and len(held) == len(packed) and all(
                held.get(name) is item for name, item in packed.items()):
            return held
        return ResourceSet(type_url, packed)

    def _change_pool(self, type_url: str, resources: Mapping[str, Value], exact: bool) -> None:
        pool = self._pool[type_url]
        changes: dict[str, CachedResource | None] = {}
        for name, value in resources.items():
            held = pool.get(name)
            packed = self._pack(type_url, name, value, held)
            if packed is not held:
                changes[name] = packed
        if exact:
            changes.update({name: None for name in pool.names() if name not in resources})
        if changes:
            self._pool[type_url] = pool.replaced(changes)
            self._dirty_types.setdefault(type_url, set()).update(changes)
        self._maybe_commit()

    def _maybe_commit(self) -> None:
        if self._depth == 0:
            self._commit()

    def _build(self, spec: ViewSpec) -> View:
        types: dict[str, TypeContent] = {}
        for type_url in TYPE_URLS:
            names = spec.shared.get(type_url)
            pool = self._pool[type_url]
            shared = pool if names is None else pool.select(names)
            own = spec.own.get(type_url)
            if own is not None and len(shared) and not isinstance(own, ResourceSet):
                own = ResourceSet(type_url, own.resources)  # an overlay laid over shared ones
            types[type_url] = (shared if own is None else own if not len(shared)
                               else Overlay(shared, own))  # type: ignore[arg-type]
        return View(types)

    def _affected(self, spec: ViewSpec) -> bool:
        for type_url, names in self._dirty_types.items():
            scope = spec.shared.get(type_url)
            if scope is None or not scope.isdisjoint(names):
                return True
        return False

    def _commit(self, *, quiet: bool = False) -> None:
        committed = Committed(
            {type_url: {name: self._pool[type_url].get(name) for name in names}
             for type_url, names in self._dirty_types.items()},
            {key: self._specs.get(key) for key in self._dirty_views})
        changed: set[str] = set()
        # A change of shared resources may touch any view; a change of views only those.
        keys = self._specs.keys() if self._dirty_types else self._dirty_views
        for key in list(keys):
            spec = self._specs.get(key)
            if spec is not None and (key in self._dirty_views or self._affected(spec)):
                view = self._build(spec)
                old = self._views.get(key)
                if old is None or old.version != view.version:
                    self._views[key] = view
                    changed.add(key)
        for key in self._dirty_views:
            if key not in self._specs and self._views.pop(key, None) is not None:
                changed.add(key)
        self._dirty_types.clear()
        self._dirty_views.clear()
        self.generation += 1
        woken = {watch for key in changed for watch in self._watches.get(key, ())}
        for watch in woken:
            self._register(watch)  # the view it resolves to may be another one now
        for watch in woken:
            watch.callback()
        if committed.shared or committed.views:
            for listener in list(self._listeners.values()):
                listener(committed)
        if not quiet:
            for callback in list(self._global.values()):
                callback()

    def _register(self, watch: _Watch) -> None:
        keys = []
        for key in self.candidates(watch.node):
            keys.append(key)
            if key in self._views:
                break
        if tuple(keys) == watch.keys:
            return
        self._unregister(watch)
        watch.keys = tuple(keys)
        for key in keys:
            self._watches.setdefault(key, set()).add(watch)

    def _unregister(self, watch: _Watch) -> None:
        for key in watch.keys:
            watches = self._watches.get(key)
            if watches is not None:
                watches.discard(watch)
                if not watches:
                    del self._watches[key]
        watch.keys = ()
