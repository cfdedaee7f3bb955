"""The store's objects kept in memory and served: the source of `pointsman controlplane
--store`.

`StoreMirror` lists the store once, then follows its watch. After each change it decodes
only the objects that changed, resolves the whole mesh and compiles it for the connected
sidecars off the event loop (`MeshCache.prepare`), and publishes it into the `MeshCache`.
Changes that arrive together are applied together. If the watch breaks (the store restarted,
or its history was compacted) the mirror lists again from scratch, after a backoff; meanwhile
the last mesh keeps serving.

Other parts ask it for the current `State` (apply plans against it), wait for a revision to
be reached (`wait_for`: an Apply returns once its own change serves), and subscribe to the
changes (`subscribe`: the Watch RPC).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from controlplane import logs
from controlplane.api.apply import State
from controlplane.api.objects import decode
from controlplane.mesh import MeshError, MeshObject, ObjectKey, resolve
from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.resolve import Mesh
from controlplane.sources.mesh import MeshCache
from controlplane.store import Change, Record, Store, StoreError

log = logging.getLogger("pointsman.controlplane.api")


ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True)
class ObjectEvent:
    """One object changed by the commit at `revision` (DELETED carries its last record)."""

    type: str
    record: Record
    revision: int


@dataclass(frozen=True)
class Loaded:
    """A state and its resolved mesh, built off the loop."""

    state: State
    mesh: Mesh
    errors: dict[ObjectKey, str]
    changes: tuple[Change, ...]
    compiler: MeshCompiler | None = None  # the cache's prepare(mesh): compiled off the loop


class StoreMirror:
    """Follows `store` and publishes its mesh into `cache`. Same shape as the file sources
    (`poll_in_thread()` once, then `run()`), so the control plane runs it like them."""

    RETRY = (0.2, 5.0)  # backoff after a broken watch: first, most
    HISTORY = 10_000  # object events kept for watches that resume from a revision

    def __init__(self, store: Store, cache: MeshCache, *,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.store = store
        self.cache = cache
        self.on_error = on_error or (lambda error: log.error("store: %s", error))
        self.state = State()
        self.errors: dict[ObjectKey, str] = {}  # stored objects that no longer load
        self.last_error: Exception | None = None
        self.loads = 0
        self._reached = asyncio.Condition()
        self._subscribers: set[asyncio.Queue[ObjectEvent]] = set()
        self.history: deque[ObjectEvent] = deque(maxlen=self.HISTORY)

    def __repr__(self) -> str:
        return f"StoreMirror({self.store!r}, rev={self.state.revision}, loads={self.loads})"

    @property
    def revision(self) -> int:
        return self.state.revision

    # ---- loading ----------------------------------------------------------------------------

    async def poll_in_thread(self) -> bool:
        """List the store and publish its mesh; False (and last_error) when it cannot."""
        try:
            listing = await self.store.list()
        except StoreError as error:
            self._failed(error)
            return False
        records = {record.key: record for record in listing.records}
        before = self.state
        state = State(listing.revision, before.records, before.objects)
        changes = (_difference(before, records, listing.revision),) if self.loads else ()
        loaded = await asyncio.to_thread(self._prepared, state, records, changes)
        await self._publish(loaded)
        return True

    async def run(self) -> None:
        delay = self.RETRY[0]
        while True:
            try:
                await self._follow()
            except StoreError as error:
                self._failed(error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.RETRY[1])
            if await self.poll_in_thread():
                delay = self.RETRY[0]

    async def _follow(self) -> None:
        pending: asyncio.Queue[Change] = asyncio.Queue()

        async def read() -> None:
            async for change in self.store.watch(self.state.revision):
                pending.put_nowait(change)
        reader = asyncio.create_task(read(), name="store-watch")
        try:
            while True:
                changes = [await _first(pending, reader)]
                while not pending.empty():
                    changes.append(pending.get_nowait())
                await self._apply(changes)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)  # its error was raised here

    async def _apply(self, changes: list[Change]) -> None:
        changes = [change for change in changes if change.revision > self.state.revision]
        if not changes:
            return
        records = dict(self.state.records)
        for change in changes:
            for record in change.puts:
                records[record.key] = record
            for key in change.deletes:
                records.pop(key, None)
        state = State(changes[-1].revision, self.state.records, self.state.objects)
        loaded = await asyncio.to_thread(self._prepared, state, records, tuple(changes))
        await self._publish(loaded)

    def _prepared(self, state: State, records: dict[ObjectKey, Record],
                  changes: tuple[Change, ...]) -> Loaded:
        """(In a worker thread.) The new state, resolved, and compiled for the connected
        nodes, as MeshSource does: swapping it in then compiles nothing on the event loop."""
        loaded = _load(state, records, self.errors, changes)
        return dataclasses.replace(loaded, compiler=self.cache.prepare(loaded.mesh))

    async def _publish(self, loaded: Loaded) -> None:
        events = _events(self.state, loaded.changes)
        self.state, self.errors = loaded.state, loaded.errors
        self.cache.set_mesh(loaded.mesh, loaded.compiler)
        self.loads += 1
        self.last_error = None
        logs.event("store_loaded", revision=self.state.revision,
                   objects=len(self.state.records), unreadable=len(self.errors))
        self.history.extend(events)
        for queue in list(self._subscribers):
            for event in events:
                queue.put_nowait(event)
        async with self._reached:
            self._reached.notify_all()

    def _failed(self, error: Exception) -> None:
        self.last_error = error
        self.on_error(error)

    # ---- for the API ------------------------------------------------------------------------

    async def wait_for(self, revision: int) -> None:
        """Until the published mesh is at `revision` or later (callers bound the wait)."""
        async with self._reached:
            await self._reached.wait_for(lambda: self.state.revision >= revision)

    def subscribe(self) -> asyncio.Queue[ObjectEvent]:
        """A queue of every object event published from now on (the Watch RPC); call
        `unsubscribe` when done."""
        queue: asyncio.Queue[ObjectEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[ObjectEvent]) -> None:
        self._subscribers.discard(queue)

    def events_after(self, revision: int) -> list[ObjectEvent] | None:
        """The kept events after `revision`; None when some of them are no longer kept."""
        if revision >= self.state.revision:
            return []
        oldest = self.history[0].revision if self.history else self.state.revision + 1
        if revision + 1 < oldest:
            return None
        return [event for event in self.history if event.revision > revision]


async def _first(pending: asyncio.Queue[Change], reader: asyncio.Task[None]) -> Change:
    """The next change; StoreError when the watch ended instead."""
    getter = asyncio.ensure_future(pending.get())
    try:
        await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return getter.result()
    error = reader.exception()
    if isinstance(error, StoreError):
        raise error
    raise StoreError(f"the store's watch ended: {error!r}")


def _events(before: State, changes: tuple[Change, ...]) -> list[ObjectEvent]:
    records = dict(before.records)
    out = []
    for change in changes:
        for record in change.puts:
            kind = MODIFIED if record.key in records else ADDED
            records[record.key] = record
            out.append(ObjectEvent(kind, record, change.revision))
        for key in change.deletes:
            gone = records.pop(key, None)
            if gone is not None:
                out.append(ObjectEvent(DELETED, gone, change.revision))
    return out


def _difference(before: State, records: dict[ObjectKey, Record], revision: int) -> Change:
    """What a fresh listing changed (watchers of the mirror missed it while it re-listed)."""
    puts = tuple(record for key, record in sorted(records.items())
                 if key not in before.records or before.records[key].revision != record.revision)
    gone = tuple(sorted(key for key in before.records if key not in records))
    return Change(revision, puts, gone)


def _load(state: State, records: dict[ObjectKey, Record], errors: dict[ObjectKey, str],
          changes: tuple[Change, ...]) -> Loaded:
    """Decode what changed (all of it on a first load) and resolve the mesh. A stored object
    that no longer loads (an older control plane wrote it) is left out and reported."""
    objects: dict[ObjectKey, MeshObject] = {}
    errors = {key: text for key, text in errors.items() if key in records}
    for key, record in records.items():
        old = state.records.get(key)
        if old is not None and old.revision == record.revision and key in state.objects:
            objects[key] = state.objects[key]
            continue
        try:
            objects[key] = decode(record)
            errors.pop(key, None)
        except MeshError as error:
            errors[key] = str(error)
            logs.event("stored_object_unreadable", logging.ERROR, object=str(key),
                       error=str(error))
    mesh = resolve(objects.values())
    return Loaded(State(state.revision, records, objects), mesh, errors, changes)
