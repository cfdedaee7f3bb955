"""The etcd store keeps the store contract against a real etcd (Debian's etcd-server, started
here): conditional atomic commits, revisions and watches are etcd's; a watch from a compacted
revision is Compacted; an unreachable etcd is a StoreError naming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.store import Compacted, Store, StoreError, open_store
from controlplane.store.etcd import EtcdStore
from tests.support.etcd import EtcdServer, available
from tests.support.ports import free_port
from tests.unit.controlplane.store.contract import A, B, StoreContract

pytestmark = pytest.mark.skipif(not available(), reason="needs etcd (Debian's etcd-server)")


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        server.wait_ready()
        yield server


class TestEtcdStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, etcd: EtcdServer) -> None:
        self.etcd = etcd

    async def make_store(self, tmp_path: Path) -> Store:
        store = open_store(f"{self.etcd.url}/test-{tmp_path.name}")  # a prefix per test
        await store.open()
        return store


async def test_a_compacted_revision(etcd: EtcdServer, tmp_path: Path) -> None:
    store = EtcdStore("127.0.0.1", etcd.port, f"/compact-{tmp_path.name}")
    await store.open()
    try:
        first = await store.commit((await store.list()).revision, {A: b"1"}, ())
        second = await store.commit(first, {B: b"2"}, ())
        await store.client.compact(second)
        with pytest.raises(Compacted):
            await anext(store.watch(first - 1))
    finally:
        await store.close()


async def test_an_unreachable_etcd_is_named() -> None:
    port = free_port()
    store = EtcdStore("127.0.0.1", port)
    with pytest.raises(StoreError, match=f"etcd://127.0.0.1:{port}/pointsman"):
        await store.open()
    await store.close()
