"""The default store: one JSON file in a folder, rewritten atomically on every commit.

`FileStore(folder)` keeps every record in `folder/objects.json` (`{"revision": N, "records":
[...]}`, each record's value being the object's JSON text). A commit writes the whole new state
to a temporary file in the same folder, fsyncs it, renames it over the old one (rename(2) is
atomic: a reader, or a control plane restarted after a crash, sees the old state or the new
one, never a mix) and fsyncs the folder so the rename itself survives a power cut. Only then is
the change published. One control plane at a time: `folder/lock` is held with flock(2) while
the store is open, and a second one is refused.

Secrets (the mesh CA's root key) are files of their own in `folder/secrets/` (mode 0700), each
mode 0600 from its creation (O_EXCL, so a secret is never replaced), never in objects.json.

Watches in the past reach back to the commits made since the store was opened; older ones get
`Compacted` (the mirror then lists again).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from controlplane.mesh.objects import ObjectKey
from controlplane.store.base import Change, MemoryStore, Record, StoreError

STATE_FILE = "objects.json"
LOCK_FILE = "lock"
SECRETS_FOLDER = "secrets"
FORMAT = 1


class FileStore(MemoryStore):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder
        self.url = f"file:{folder}"
        self._lock_fd: int | None = None

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StoreError(f"{self.folder}: {error.strerror}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            raise StoreError(f"{self.folder}: in use by another control plane "
                             "(its lock file is held)") from error
        self._lock_fd = fd
        try:
            self.revision, self.records = read_state(self.folder / STATE_FILE)
        except StoreError:
            self._unlock()
            raise

    async def close(self) -> None:
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    async def persist(self, change: Change) -> None:
        records = dict(self.records)
        for record in change.puts:
            records[record.key] = record
        for key in change.deletes:
            records.pop(key, None)
        await asyncio.to_thread(write_state, self.folder / STATE_FILE, change.revision, records)

    async def get_secret(self, name: str) -> bytes | None:
        return await asyncio.to_thread(read_secret, self.folder / SECRETS_FOLDER, name)

    async def create_secret(self, name: str, value: bytes) -> bytes:
        return await asyncio.to_thread(create_secret, self.folder / SECRETS_FOLDER, name, value)

    async def delete_secret(self, name: str) -> bool:
        return await asyncio.to_thread(delete_secret, self.folder / SECRETS_FOLDER, name)

    async def list_secrets(self, prefix: str) -> dict[str, bytes]:
        return await asyncio.to_thread(list_secrets, self.folder / SECRETS_FOLDER, prefix)


def read_secret(folder: Path, name: str) -> bytes | None:
    try:
        return (folder / _secret_file(name)).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise StoreError(f"{folder / _secret_file(name)}: {error.strerror}") from error


def create_secret(folder: Path, name: str, value: bytes) -> bytes:
    """Written to a private temporary file, then linked to its name: link(2) fails when the
    name exists, so the first secret written stays, and nobody ever reads a partial one."""
    path = folder / _secret_file(name)
    partial = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, value)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(partial, path)
        except FileExistsError:
            return path.read_bytes()
        finally:
            partial.unlink(missing_ok=True)
    except OSError as error:
        raise StoreError(f"{path}: cannot write: {error.strerror}") from error
    return value


def delete_secret(folder: Path, name: str) -> bool:
    try:
        (folder / _secret_file(name)).unlink()
    except FileNotFoundError:
        return False
    except OSError as error:
        raise StoreError(f"{folder / name}: cannot delete: {error.strerror}") from error
    return True


def list_secrets(folder: Path, prefix: str) -> dict[str, bytes]:
    try:
        names = sorted(path.name for path in folder.iterdir()
                       if path.name.startswith(prefix) and not path.name.startswith("."))
    except FileNotFoundError:
        return {}
    found = {name: read_secret(folder, name) for name in names}
    return {name: value for name, value in found.items() if value is not None}


def _secret_file(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise StoreError(f"bad secret name {name!r}")
    return name


def read_state(path: Path) -> tuple[int, dict[ObjectKey, Record]]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return 0, {}
    except OSError as error:
        raise StoreError(f"{path}: {error.strerror}") from error
    try:
        state = json.loads(text)
        if state.get("format") != FORMAT:
            raise ValueError(f"unknown format {state.get('format')!r}")
        records = [_record(item) for item in state["records"]]
        return int(state["revision"]), {record.key: record for record in records}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise StoreError(f"{path}: not a Pointsman store file ({error})") from error


def _record(item: dict[str, Any]) -> Record:
    key = ObjectKey(str(item["kind"]), str(item["namespace"]), str(item["name"]))
    return Record(key, str(item["value"]).encode(), int(item["revision"]), int(item["created"]))


def write_state(path: Path, revision: int, records: dict[ObjectKey, Record]) -> None:
    state = {"format": FORMAT, "revision": revision, "records": [
        {"kind": key.kind, "namespace": key.namespace, "name": key.name,
         "revision": record.revision, "created": record.created,
         "value": record.value.decode()}
        for key, record in sorted(records.items())]}
    partial = path.with_name(f".{path.name}.tmp")
    try:
        with open(partial, "wb") as sink:
            sink.write(json.dumps(state, separators=(",", ":")).encode())
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(partial, path)
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as error:
        raise StoreError(f"{path}: cannot write: {error.strerror}") from error
