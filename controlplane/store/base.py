"""The store's small interface: where applied mesh objects live, with revisions and watches.

A store holds one value (the object's JSON) per `ObjectKey`. Every commit is atomic and gets a
new revision, greater than every earlier one; each record keeps the revision that last changed
it (`revision`, the object's resourceVersion) and the one that created it (`created`).
A commit names the revision its author read (`base`): it fails with `Conflict` when another
commit came after it, so a set validated as a whole is stored as a whole or not at all (with
several control-plane replicas, the one that wrote first wins and the other validates again).

`watch(after)` yields every commit after revision `after`, in order, each as one `Change`.
`MemoryStore` (here) is the reference implementation and the fake the unit tests use;
`FileStore` adds persistence and `EtcdStore` shares one store between replicas.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

from controlplane.mesh.objects import ObjectKey


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, corrupt, too large...)."""


class Conflict(StoreError):
    """Another commit came after the revision the caller based its change on."""

    def __init__(self, base: int, current: int) -> None:
        super().__init__(f"the mesh changed since revision {base} (now {current})")
        self.base = base
        self.current = current


class Compacted(StoreError):
    """The revision a watch asked to start after is no longer kept."""


@dataclass(frozen=True)
class Record:
    key: ObjectKey
    value: bytes  # the object's JSON (controlplane.api.objects)
    revision: int  # of the commit that last changed it
    created: int  # of the commit that created it

    def __repr__(self) -> str:
        return f"Record({self.key}, rev={self.revision})"


@dataclass(frozen=True)
class Listing:
    """Every record as of `revision` (the latest commit the store had seen)."""

    revision: int
    records: tuple[Record, ...]


@dataclass(frozen=True)
class Change:
    """One commit: the records it wrote and the keys it deleted."""

    revision: int
    puts: tuple[Record, ...] = ()
    deletes: tuple[ObjectKey, ...] = ()


class Store(ABC):
    """Where applied objects live. Implementations: MemoryStore, FileStore, EtcdStore."""

    url: str = ""

    async def open(self) -> None:  # noqa: B027 - most stores have nothing to open
        """Connect or load; raises StoreError."""

    async def close(self) -> None:  # noqa: B027
        """Release what open() took."""

    @abstractmethod
    async def list(self) -> Listing:
        """Every record, and the revision they are as of."""

    @abstractmethod
    async def commit(self, base: int, puts: Mapping[ObjectKey, bytes],
                     deletes: Iterable[ObjectKey]) -> int:
        """Write `puts` and delete `deletes` atomically unless a commit came after `base`
        (Conflict). Returns the new revision."""

    @abstractmethod
    def watch(self, after: int) -> AsyncIterator[Change]:
        """Every commit after revision `after`, in order, until cancelled. Compacted when
        `after` is older than what the store keeps."""

    # Secrets (the mesh CA's root: controlplane/ca/keeper.py) live beside the objects, never
    # in them: not listed, watched, returned by the management API, nor logged.

    @abstractmethod
    async def get_secret(self, name: str) -> bytes | None:
        """The secret `name`, None when there is none."""

    @abstractmethod
    async def create_secret(self, name: str, value: bytes) -> bytes:
        """Keep `value` as `name` unless a secret of that name exists; returns the one kept
        (a replica that lost the race to create it gets the winner's)."""

    @abstractmethod
    async def delete_secret(self, name: str) -> bool:
        """Forget the secret `name`; False when there was none."""

    @abstractmethod
    async def list_secrets(self, prefix: str) -> dict[str, bytes]:
        """The secrets whose name starts with `prefix` (join tokens: their hashes)."""


class MemoryStore(Store):
    """A store in memory, with a bounded history for watches that start in the past."""

    HISTORY = 1000

    def __init__(self) -> None:
        self.url = "memory:"
        self.records: dict[ObjectKey, Record] = {}
        self.revision = 0
        self.history: list[Change] = []
        self._changed = asyncio.Condition()
        self._writing = asyncio.Lock()  # one commit at a time: check, persist, publish
        self.secrets: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url}, rev={self.revision}, {len(self.records)})"

    async def list(self) -> Listing:
        return Listing(self.revision, tuple(self.records[key] for key in sorted(self.records)))

    async def commit(self, base: int, puts: Mapping[ObjectKey, bytes],
                     deletes: Iterable[ObjectKey]) -> int:
        async with self._writing:
            if base < self.revision:
                raise Conflict(base, self.revision)
            change = self.prepare(puts, deletes)
            if not change.puts and not change.deletes:
                return self.revision
            await self.persist(change)
            await self.publish(change)
            return change.revision

    def prepare(self, puts: Mapping[ObjectKey, bytes], deletes: Iterable[ObjectKey]) -> Change:
        revision = self.revision + 1
        written = tuple(Record(key, value, revision, self._created(key, revision))
                        for key, value in sorted(puts.items()))
        gone = tuple(sorted(key for key in set(deletes) if key in self.records
                            and key not in puts))
        return Change(revision, written, gone)

    def _created(self, key: ObjectKey, revision: int) -> int:
        found = self.records.get(key)
        return found.created if found is not None else revision

    async def persist(self, change: Change) -> None:  # FileStore writes here
        """Make `change` durable before anyone sees it."""

    async def publish(self, change: Change) -> None:
        self.apply(change)
        async with self._changed:
            self._changed.notify_all()

    def apply(self, change: Change) -> None:
        for record in change.puts:
            self.records[record.key] = record
        for key in change.deletes:
            self.records.pop(key, None)
        self.revision = change.revision
        self.history.append(change)
        del self.history[:-self.HISTORY]

    async def watch(self, after: int) -> AsyncIterator[Change]:
        seen = after
        while True:
            self._check_kept(seen)
            for change in [item for item in self.history if item.revision > seen]:
                seen = change.revision
                yield change
            async with self._changed:
                if self.revision <= seen:
                    await self._changed.wait()

    async def get_secret(self, name: str) -> bytes | None:
        return self.secrets.get(name)

    async def create_secret(self, name: str, value: bytes) -> bytes:
        return self.secrets.setdefault(name, value)

    async def delete_secret(self, name: str) -> bool:
        return self.secrets.pop(name, None) is not None

    async def list_secrets(self, prefix: str) -> dict[str, bytes]:
        return {name: value for name, value in self.secrets.items() if name.startswith(prefix)}

    def _check_kept(self, seen: int) -> None:
        """Commits after `seen` must all still be in the history."""
        oldest = self.history[0].revision if self.history else self.revision + 1
        if seen < self.revision and seen + 1 < oldest:
            raise Compacted(f"revision {seen} is older than the history kept (from {oldest})")
