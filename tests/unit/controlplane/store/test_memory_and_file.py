"""The memory and file stores keep the store contract; the file store survives a restart,
writes atomically, refuses a second control plane and names a corrupt file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from controlplane.store import (
    Compacted,
    FileStore,
    MemoryStore,
    Store,
    StoreError,
    open_store,
    parse_store_url,
)
from tests.unit.controlplane.store.contract import A, B, StoreContract


class TestMemoryStore(StoreContract):
    async def make_store(self, tmp_path: Path) -> Store:
        store = MemoryStore()
        await store.open()
        return store


class TestFileStore(StoreContract):
    async def make_store(self, tmp_path: Path) -> Store:
        store = FileStore(tmp_path / "state")
        await store.open()
        return store


async def test_file_store_survives_a_restart(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.open()
    revision = await store.commit(0, {A: b'{"x":1}', B: b'{"y":2}'}, ())
    revision = await store.commit(revision, {}, [B])
    await store.close()
    again = FileStore(tmp_path)
    await again.open()
    listing = await again.list()
    assert listing.revision == revision
    assert [(record.key, record.value) for record in listing.records] == [(A, b'{"x":1}')]
    assert await again.commit(revision, {B: b"{}"}, ()) == revision + 1
    await again.close()


async def test_file_store_is_held_by_one_control_plane(tmp_path: Path) -> None:
    first = FileStore(tmp_path)
    await first.open()
    second = FileStore(tmp_path)
    with pytest.raises(StoreError, match="in use by another control plane"):
        await second.open()
    await first.close()
    await second.open()  # free once the first let go
    await second.close()


async def test_a_failed_write_changes_nothing(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    await store.open()
    revision = await store.commit(0, {A: b"1"}, ())
    before = (tmp_path / "objects.json").read_bytes()

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StoreError, match="No space left on device"):
        await store.commit(revision, {B: b"2"}, ())
    assert (tmp_path / "objects.json").read_bytes() == before
    listing = await store.list()
    assert (listing.revision, [record.key for record in listing.records]) == (revision, [A])
    await store.close()


async def test_a_corrupt_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "objects.json").write_text('{"format": 1, "revision": 3, "records": [{')
    with pytest.raises(StoreError, match=r"objects\.json: not a Pointsman store file"):
        await FileStore(tmp_path).open()
    (tmp_path / "objects.json").write_text(json.dumps({"format": 9}))
    with pytest.raises(StoreError, match="unknown format 9"):
        await FileStore(tmp_path).open()


async def test_a_watch_older_than_the_restart_is_compacted(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    await store.open()
    await store.commit(await store.commit(0, {A: b"1"}, ()), {B: b"2"}, ())
    await store.close()
    again = FileStore(tmp_path)
    await again.open()
    with pytest.raises(Compacted):
        await anext(again.watch(0))
    await again.close()


def test_store_urls() -> None:
    assert parse_store_url("file:/var/lib/p") == ("file", "/var/lib/p")
    assert parse_store_url("state") == ("file", "state")
    assert parse_store_url("memory:") == ("memory", "")
    assert parse_store_url("etcd://127.0.0.1:2379") == ("etcd", "127.0.0.1:2379/pointsman")
    assert parse_store_url("etcd://10.0.0.1:2379/mesh/a/") == ("etcd", "10.0.0.1:2379/mesh/a")
    for bad in ("etcd://host", "http://x", "file:"):
        with pytest.raises(ValueError):
            parse_store_url(bad)
    assert isinstance(open_store("memory:"), MemoryStore)


async def test_file_store_secrets_are_private_files_that_survive_a_restart(
        tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state")
    await store.open()
    await store.create_secret("ca-root", b"key material")
    await store.close()
    folder = tmp_path / "state" / "secrets"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "ca-root").stat().st_mode & 0o777 == 0o600
    assert b"key material" not in (tmp_path / "state" / "objects.json").read_bytes() \
        if (tmp_path / "state" / "objects.json").exists() else True
    assert [path.name for path in folder.iterdir()] == ["ca-root"]  # no temporary left
    again = FileStore(tmp_path / "state")
    await again.open()
    try:
        assert await again.get_secret("ca-root") == b"key material"
    finally:
        await again.close()
