"""The etcd store: several control-plane replicas sharing one mesh (`--store etcd://HOST:PORT
[/PREFIX]`), through aetcd (an asyncio client for etcd's v3 gRPC API).

Keys, under PREFIX (default /pointsman):
- `mesh/objects/KIND/NAMESPACE/NAME`: each object's JSON; a record's revision is the key's
  mod_revision, its creation revision the key's create_revision (etcd's own revisions);
- `secrets/NAME`: the mesh CA's root (controlplane/ca/keeper.py), created once by whichever
  replica comes first (a transaction conditional on the key not existing), outside `mesh/` so
  that no watch or listing carries it;
- `mesh/revision`: written by every commit, last in its transaction. A commit is one etcd
  transaction conditional on this key not having changed since the revision the committer
  read (`mod_revision < base + 1`): validation against the whole mesh and the write are one
  atomic step across replicas, and the loser gets `Conflict`.

`watch(after)` is etcd's watch from revision after + 1 over `mesh/`; the events of one commit
are grouped into one Change, which ends at its `mesh/revision` event (etcd emits a
transaction's events in the order of its operations). A compacted revision is `Compacted`;
a lost connection ends the watch with StoreError (the mirror lists and watches again).

etcd bounds a transaction (`--max-txn-ops`, default 128 operations) and a request
(`--max-request-bytes`, default 1.5 MiB): an apply larger than that is refused with etcd's
message; run etcd with larger limits for big meshes (the tests use 16,384 and 32 MiB).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

import aetcd
import aetcd.exceptions

from controlplane.mesh.objects import ObjectKey
from controlplane.store.base import Change, Compacted, Conflict, Listing, Record, Store, StoreError

CLIENT_OPTIONS = {"grpc.max_receive_message_length": 256 * 1024 * 1024,
                  "grpc.max_send_message_length": 64 * 1024 * 1024}
TIMEOUT = 10  # seconds for one etcd call


class EtcdStore(Store):
    def __init__(self, host: str, port: int, prefix: str = "/pointsman", *,
                 lease_ttl: int = 10) -> None:
        self.host, self.port = host, port
        self.prefix = prefix.rstrip("/")
        self.url = f"etcd://{host}:{port}{self.prefix}"
        self.lease_ttl = lease_ttl
        self.mesh_prefix = f"{self.prefix}/mesh/".encode()
        self.objects_prefix = f"{self.prefix}/mesh/objects/".encode()
        self.sentinel = f"{self.prefix}/mesh/revision".encode()
        self.secrets_prefix = f"{self.prefix}/secrets/".encode()
        self.client = aetcd.Client(host, port, timeout=TIMEOUT, options=CLIENT_OPTIONS)

    def __repr__(self) -> str:
        return f"EtcdStore({self.url})"

    async def open(self) -> None:
        try:
            await self.client.connect()
            await self.client.status()
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error

    async def close(self) -> None:
        await self.client.close()

    def key(self, key: ObjectKey) -> bytes:
        return self.objects_prefix + f"{key.kind}/{key.namespace}/{key.name}".encode()

    def object_key(self, raw: bytes) -> ObjectKey | None:
        if not raw.startswith(self.objects_prefix):
            return None
        parts = raw[len(self.objects_prefix):].decode(errors="replace").split("/")
        return ObjectKey(*parts) if len(parts) == 3 else None

    async def list(self) -> Listing:
        try:
            found = await self.client.get_prefix(self.objects_prefix)
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error
        records = []
        for item in found:
            key = self.object_key(item.key)
            if key is not None:
                records.append(Record(key, item.value, item.mod_revision, item.create_revision))
        return Listing(found.header.revision, tuple(sorted(records, key=lambda r: r.key)))

    async def commit(self, base: int, puts: Mapping[ObjectKey, bytes],
                     deletes: Iterable[ObjectKey]) -> int:
        gone = [key for key in set(deletes) if key not in puts]
        if not puts and not gone:
            return base
        txn = self.client.transactions
        operations: list[Any] = [txn.put(self.key(key), value) for key, value in sorted(
            puts.items())]
        operations += [txn.delete(self.key(key)) for key in sorted(gone)]
        operations.append(txn.put(self.sentinel, b""))
        try:
            succeeded, responses = await self.client.transaction(
                compare=[txn.mod(self.sentinel) < base + 1], success=operations, failure=[])
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error
        if not succeeded:
            raise Conflict(base, -1)
        return int(responses[-1].response_put.header.revision)

    async def get_secret(self, name: str) -> bytes | None:
        try:
            found = await self.client.get(self.secrets_prefix + name.encode())
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error
        return None if found is None else bytes(found.value)

    async def create_secret(self, name: str, value: bytes) -> bytes:
        key = self.secrets_prefix + name.encode()
        txn = self.client.transactions
        try:
            succeeded, _ = await self.client.transaction(
                compare=[txn.version(key) == 0], success=[txn.put(key, value)], failure=[])
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error
        if succeeded:
            return value
        kept = await self.get_secret(name)
        if kept is None:
            raise StoreError(f"{self.url}: the secret {name!r} vanished while being created")
        return kept

    async def delete_secret(self, name: str) -> bool:
        try:
            return await self.client.delete(self.secrets_prefix + name.encode()) is not None
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error

    async def list_secrets(self, prefix: str) -> dict[str, bytes]:
        try:
            found = await self.client.get_prefix(self.secrets_prefix + prefix.encode())
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: {_reason(error)}") from error
        start = len(self.secrets_prefix)
        return {bytes(item.key)[start:].decode(): bytes(item.value) for item in found}

    async def watch(self, after: int) -> AsyncIterator[Change]:
        try:
            events = await self.client.watch_prefix(self.mesh_prefix, start_revision=after + 1)
        except aetcd.exceptions.RevisionCompactedError as error:
            raise Compacted(str(error)) from error
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: watch: {_reason(error)}") from error
        puts: list[Record] = []
        deletes: list[ObjectKey] = []
        try:
            async for event in events:
                if event.kv.key == self.sentinel:
                    yield Change(event.kv.mod_revision, tuple(puts), tuple(deletes))
                    puts, deletes = [], []
                    continue
                key = self.object_key(event.kv.key)
                if key is None:
                    continue
                if event.kind == "PUT":
                    puts.append(Record(key, event.kv.value, event.kv.mod_revision,
                                       event.kv.create_revision))
                else:
                    deletes.append(key)
        except aetcd.exceptions.RevisionCompactedError as error:
            raise Compacted(str(error)) from error
        except aetcd.exceptions.ClientError as error:
            raise StoreError(f"{self.url}: watch: {_reason(error)}") from error
        finally:
            await events.cancel()
        raise StoreError(f"{self.url}: the watch ended")


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0]
