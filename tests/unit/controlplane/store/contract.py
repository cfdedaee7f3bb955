"""What every Store must do (controlplane/store/base.py), as a reusable test suite: subclass
`StoreContract` and define `async def make_store(self, tmp_path)` (tests/unit for the memory
and file stores, tests/integration for etcd)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlplane.mesh.objects import ObjectKey
from controlplane.store import Change, Conflict, Store

A = ObjectKey("Service", "default", "a")
B = ObjectKey("Service", "shop", "b")
C = ObjectKey("HTTPRoute", "default", "c")


async def next_change(watch: object) -> Change:
    return await asyncio.wait_for(anext(watch), 5.0)  # type: ignore[call-overload]


class StoreContract:
    async def make_store(self, tmp_path: Path) -> Store:
        raise NotImplementedError

    async def test_commit_then_list(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            empty = await store.list()
            first = await store.commit(empty.revision, {A: b'{"a":1}', B: b'{"b":1}'}, ())
            assert first > empty.revision
            listing = await store.list()
            assert listing.revision >= first
            assert {(r.key, r.value, r.revision, r.created) for r in listing.records} == {
                (A, b'{"a":1}', first, first), (B, b'{"b":1}', first, first)}
            second = await store.commit(listing.revision, {A: b'{"a":2}'}, [B])
            assert second > first
            after = {record.key: record for record in (await store.list()).records}
            assert set(after) == {A}
            assert (after[A].value, after[A].revision, after[A].created) == (
                b'{"a":2}', second, first)
        finally:
            await store.close()

    async def test_a_commit_based_on_an_old_revision_is_refused(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            base = (await store.list()).revision
            await store.commit(base, {A: b"1"}, ())
            with pytest.raises(Conflict):
                await store.commit(base, {B: b"2"}, ())
            assert {record.key for record in (await store.list()).records} == {A}
        finally:
            await store.close()

    async def test_concurrent_commits_on_one_base_one_wins(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            base = (await store.list()).revision
            results = await asyncio.gather(store.commit(base, {A: b"1"}, ()),
                                           store.commit(base, {B: b"2"}, ()),
                                           return_exceptions=True)
            assert sum(isinstance(item, Conflict) for item in results) == 1
            assert len((await store.list()).records) == 1
        finally:
            await store.close()

    async def test_watch_yields_every_commit_in_order(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            base = (await store.list()).revision
            watch = store.watch(base)
            first = await store.commit(base, {A: b"1", C: b"3"}, ())
            second = await store.commit(first, {B: b"2"}, [A])
            one, two = await next_change(watch), await next_change(watch)
            assert (one.revision, {r.key for r in one.puts}, one.deletes) == (first, {A, C}, ())
            assert (two.revision, {r.key for r in two.puts}, set(two.deletes)) == (
                second, {B}, {A})
            # a watch from the past replays what came after it
            replay = store.watch(first)
            again = await next_change(replay)
            assert again.revision == second
            await watch.aclose()  # type: ignore[attr-defined]
            await replay.aclose()  # type: ignore[attr-defined]
        finally:
            await store.close()

    async def test_an_empty_commit_writes_nothing(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            base = (await store.list()).revision
            assert await store.commit(base, {}, []) == base
        finally:
            await store.close()

    async def test_secrets_are_created_once_and_never_listed(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            assert await store.get_secret("ca-root") is None
            assert await store.create_secret("ca-root", b"first") == b"first"
            # a second creator (another replica) gets the one kept, not its own
            assert await store.create_secret("ca-root", b"second") == b"first"
            assert await store.get_secret("ca-root") == b"first"
            listing = await store.list()
            assert all(b"first" not in record.value for record in listing.records)
        finally:
            await store.close()

    async def test_secrets_are_listed_by_prefix_and_deleted(self, tmp_path: Path) -> None:
        store = await self.make_store(tmp_path)
        try:
            await store.create_secret("token-aa", b"1")
            await store.create_secret("token-bb", b"2")
            await store.create_secret("ca-root", b"root")
            assert await store.list_secrets("token-") == {"token-aa": b"1", "token-bb": b"2"}
            assert await store.delete_secret("token-aa")
            assert not await store.delete_secret("token-aa")
            assert await store.list_secrets("token-") == {"token-bb": b"2"}
        finally:
            await store.close()
