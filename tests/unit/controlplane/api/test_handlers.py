"""MeshApi over a MemoryStore and the mirror feeding a MeshCache, without sockets: applied
objects are stored and served, a refused apply changes nothing, a commit that lost a race is
planned again, deletes, and the mirror's object events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping

import pytest

from controlplane.api.handlers import ApiError, MeshApi
from controlplane.api.mirror import StoreMirror
from controlplane.api.status import StatusView
from controlplane.mesh import ObjectKey
from controlplane.sources.mesh import MeshCache
from controlplane.store import MemoryStore, Store
from tests.unit.controlplane.api.test_apply import API, ROUTE

SERVICE = ObjectKey("Service", "default", "api")
ROUTE_KEY = ObjectKey("HTTPRoute", "default", "r")


async def started(store: Store) -> tuple[MeshApi, StoreMirror, MeshCache, asyncio.Task[None]]:
    cache = MeshCache()
    mirror = StoreMirror(store, cache)
    assert await mirror.poll_in_thread()
    task = asyncio.create_task(mirror.run())
    return MeshApi(store, mirror, clock=lambda: 1_800_000_000.0), mirror, cache, task


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_applied_objects_are_stored_and_served() -> None:
    store = MemoryStore()
    api, mirror, cache, task = await started(store)
    try:
        result = await api.apply([("mesh.yaml", (API + "---" + ROUTE).encode())])
        assert [item.action for item in result.outcomes] == ["created", "created"]
        assert result.revision == store.revision == mirror.revision == 1
        assert set(cache.mesh.objects) == {SERVICE, ROUTE_KEY}
        record, obj = api.get("svc", "", "api")
        assert record.revision == 1 and obj is not None and obj.meta.generation == 1
        conditions = StatusView(cache).of(ROUTE_KEY, mirror.state.objects[ROUTE_KEY])[
            "conditions"]
        assert [(item["type"], item["status"]) for item in conditions] == [
            ("Accepted", "True"), ("ResolvedRefs", "True")]
    finally:
        await stopped(task)


async def test_a_refused_apply_changes_nothing() -> None:
    store = MemoryStore()
    api, _mirror, cache, task = await started(store)
    try:
        await api.apply([("mesh.yaml", API.encode())])
        served = cache.mesh
        bad = ROUTE.replace("backendRefs", "backendRef")
        with pytest.raises(ApiError) as refused:
            await api.apply([("ok.yaml", ROUTE.replace("name: r", "name: r2").encode()),
                             ("bad.yaml", bad.encode())])
        assert refused.value.code == "INVALID_ARGUMENT"
        assert [str(item) for item in refused.value.problems] == [
            "bad.yaml:7: HTTPRoute default/r: spec.rules[0].backendRef: error: unknown field "
            "(Invalid)"]
        assert (store.revision, cache.mesh) == (1, served)
        with pytest.raises(ApiError, match="not UTF-8"):
            await api.apply([("x.yaml", b"kind: Service\nmetadata: {name: \xff}\n")])
        dry = await api.apply([("mesh.yaml", ROUTE.encode())], dry_run=True)
        assert ([item.action for item in dry.outcomes], store.revision) == (["created"], 1)
    finally:
        await stopped(task)


class RacingStore(MemoryStore):
    """Another replica commits once, just before our first commit."""

    def __init__(self) -> None:
        super().__init__()
        self.raced = False

    async def commit(self, base: int, puts: Mapping[ObjectKey, bytes],
                     deletes: Iterable[ObjectKey]) -> int:
        if not self.raced and puts:
            self.raced = True
            other = ObjectKey("Service", "default", "other")
            await super().commit(self.revision, {other: next(iter(puts.values())).replace(
                b'"name":"api"', b'"name":"other"')}, ())
        return await super().commit(base, puts, deletes)


async def test_a_commit_that_lost_a_race_is_planned_again() -> None:
    store = RacingStore()
    api, _mirror, cache, task = await started(store)
    try:
        result = await api.apply([("mesh.yaml", API.encode())])
        assert result.revision == 2 and store.raced
        assert {key.name for key in cache.mesh.objects} == {"api", "other"}
    finally:
        await stopped(task)


async def test_delete_and_the_mirror_events() -> None:
    store = MemoryStore()
    api, mirror, _, task = await started(store)
    events = mirror.subscribe()
    try:
        await api.apply([("mesh.yaml", (API + "---" + ROUTE).encode())])
        await api.apply([("mesh.yaml", API.replace("8080, app", "9090, app").encode())])
        result = await api.delete([], [ROUTE_KEY])
        assert [item.action for item in result.outcomes] == ["deleted"]
        with pytest.raises(ApiError, match="not found"):
            await api.delete([("f.yaml", ROUTE.encode())], [])
        seen = [(event.type, event.record.key.name, event.revision)
                for event in [events.get_nowait() for _ in range(events.qsize())]]
        assert seen == [("ADDED", "r", 1), ("ADDED", "api", 1), ("MODIFIED", "api", 2),
                        ("DELETED", "r", 3)]
        assert [event.revision for event in mirror.events_after(1) or []] == [2, 3]
    finally:
        mirror.unsubscribe(events)
        await stopped(task)


class ForgetfulStore(MemoryStore):
    """Its first watch ends at once, as a store that restarted: the mirror lists again."""

    def __init__(self) -> None:
        super().__init__()
        self.watches = 0

    async def watch(self, after: int) -> AsyncIterator:  # type: ignore[override]
        self.watches += 1
        if self.watches == 1:
            from controlplane.store import StoreError
            raise StoreError("connection lost")
        async for change in super().watch(after):
            yield change


async def test_the_mirror_lists_again_after_a_broken_watch() -> None:
    store = ForgetfulStore()
    await store.commit(0, {SERVICE: b"{}"}, ())  # not a valid object: reported, left out
    api, mirror, cache, task = await started(store)
    try:
        assert SERVICE in mirror.errors and SERVICE not in cache.mesh.objects
        await asyncio.sleep(0.5)  # the retry
        assert store.watches >= 2
        await api.apply([("mesh.yaml", API.encode())])
        assert SERVICE in cache.mesh.objects and not mirror.errors
    finally:
        await stopped(task)
