"""What replicas share at run time besides the mesh: who is up, which sidecars registered as
endpoints with whom, each connected proxy's xDS status. Each replica owns its entries; they
vanish with it.

`LocalPresence`: one control plane, nothing to share. `EtcdPresence`: entries are etcd keys
`PREFIX/live/KIND/REPLICA/NAME` attached to the replica's lease (TTL `--lease-ttl`, kept alive
at a third of it): when a replica stops, its lease is revoked and its keys go at once; when it
dies, etcd deletes them when the lease expires. Everyone watches `PREFIX/live/` (etcd's watch,
from the revision of the first listing). Writes are made behind the caller, latest value per
key, so publishing never waits on etcd; a lost lease is granted again and every own entry
rewritten.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from controlplane import logs

log = logging.getLogger("pointsman.controlplane.presence")
Entry = tuple[str, str]  # (replica, name)


class LocalPresence:
    shared = False

    def __init__(self, replica: str) -> None:
        self.replica = replica
        self.version = 0
        self.on_change: list[Callable[[str], None]] = []
        self._own: dict[str, dict[str, bytes]] = {}

    def set(self, kind: str, name: str, value: bytes | None) -> None:
        own = self._own.setdefault(kind, {})
        if own.get(name) == value:
            return
        if value is None:
            own.pop(name, None)
        else:
            own[name] = value
        self._wrote(kind, name, value)
        self._notify(kind)

    def _wrote(self, kind: str, name: str, value: bytes | None) -> None:
        """An own entry changed (EtcdPresence writes it behind)."""

    def entries(self, kind: str) -> dict[Entry, bytes]:
        return {(self.replica, name): value for name, value in self._own.get(kind, {}).items()}

    def _notify(self, kind: str) -> None:
        self.version += 1
        for callback in list(self.on_change):
            callback(kind)

    async def start(self) -> None:
        pass

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing to do until cancelled

    async def close(self) -> None:
        pass


class EtcdPresence(LocalPresence):
    shared = True
    RETRY = 1.0  # seconds before listing and watching again after a lost watch

    def __init__(self, client: Any, prefix: str, replica: str, ttl: int = 10) -> None:
        super().__init__(replica)
        if "/" in replica:
            raise ValueError(f"replica id {replica!r} must not contain '/'")
        self.client = client
        self.prefix = f"{prefix.rstrip('/')}/live/"
        self.ttl = ttl
        self.lease: Any = None
        self._others: dict[str, dict[Entry, bytes]] = {}
        self._pending: dict[tuple[str, str], bytes | None] = {}
        self._wake = asyncio.Event()

    def key(self, kind: str, replica: str, name: str) -> bytes:
        return f"{self.prefix}{kind}/{replica}/{name}".encode()

    def entries(self, kind: str) -> dict[Entry, bytes]:
        return {**self._others.get(kind, {}), **super().entries(kind)}

    def _wrote(self, kind: str, name: str, value: bytes | None) -> None:
        self._pending[(kind, name)] = value
        self._wake.set()

    async def start(self) -> None:
        self.lease = await self.client.lease(self.ttl)
        self._rewrite_all()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._keep_alive(), name="presence-lease")
            tasks.create_task(self._write(), name="presence-writer")
            tasks.create_task(self._follow(), name="presence-watch")

    async def close(self) -> None:
        if self.lease is not None:
            try:
                await self.lease.revoke()  # our entries go now, not at the TTL
            except Exception as error:  # etcd gone: they go at the TTL
                log.warning("presence: cannot revoke lease: %s", error)

    def _rewrite_all(self) -> None:
        for kind, own in self._own.items():
            for name, value in own.items():
                self._pending[(kind, name)] = value
        self._wake.set()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(max(1.0, self.ttl / 3))
            try:
                reply = await self.lease.refresh()
                if reply is None or reply.TTL <= 0:
                    raise RuntimeError("lease expired")
            except Exception as error:
                logs.event("presence_lease_lost", logging.WARNING, error=str(error))
                try:
                    self.lease = await self.client.lease(self.ttl)
                    self._rewrite_all()
                except Exception as again:
                    logs.event("presence_lease_failed", logging.ERROR, error=str(again))

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, {}
            txn = self.client.transactions
            operations = [txn.put(self.key(kind, self.replica, name), value,
                                  lease=self.lease) if value is not None
                          else txn.delete(self.key(kind, self.replica, name))
                          for (kind, name), value in batch.items()]
            for start in range(0, len(operations), 100):  # etcd's --max-txn-ops default 128
                try:
                    await self.client.transaction(
                        compare=[], success=operations[start:start + 100], failure=[])
                except Exception as error:
                    logs.event("presence_write_failed", logging.WARNING, error=str(error))
                    for key, value in batch.items():
                        self._pending.setdefault(key, value)
                    await asyncio.sleep(self.RETRY)
                    self._wake.set()
                    break

    async def _follow(self) -> None:
        while True:
            try:
                await self._list_and_watch()
            except Exception as error:
                logs.event("presence_watch_lost", logging.WARNING, error=str(error))
            await asyncio.sleep(self.RETRY)

    async def _list_and_watch(self) -> None:
        found = await self.client.get_prefix(self.prefix.encode())
        others: dict[str, dict[Entry, bytes]] = {}
        for item in found:
            parsed = self._parse(item.key)
            if parsed is not None and parsed[1] != self.replica:
                others.setdefault(parsed[0], {})[parsed[1:]] = item.value
        kinds = set(others) | set(self._others)
        self._others = others
        for kind in kinds:
            self._notify(kind)
        events = await self.client.watch_prefix(self.prefix.encode(),
                                                start_revision=found.header.revision + 1)
        try:
            async for event in events:
                parsed = self._parse(event.kv.key)
                if parsed is None or parsed[1] == self.replica:
                    continue
                kind, entry = parsed[0], parsed[1:]
                if event.kind == "PUT":
                    self._others.setdefault(kind, {})[entry] = event.kv.value
                else:
                    self._others.get(kind, {}).pop(entry, None)
                self._notify(kind)
        finally:
            await events.cancel()

    def _parse(self, key: bytes) -> tuple[str, str, str] | None:
        text = key.decode(errors="replace")
        if not text.startswith(self.prefix):
            return None
        parts = text[len(self.prefix):].split("/", 2)
        return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None
