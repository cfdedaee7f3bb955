"""Where applied mesh objects live (`pointsman controlplane --store URL`).

- `file:PATH` (or a bare PATH): the default, one control plane; `store/file.py`;
- `etcd://HOST:PORT[/PREFIX]`: several control-plane replicas sharing one mesh; revisions,
  watches and leases are etcd's (`store/etcd.py`);
- `memory:`: nothing survives a restart (tests).

The interface (`store/base.py`) is small: list, commit (atomic, conditional on the revision
read), watch. What replicas share at run time besides the objects (registered sidecars, their
xDS status) goes through `store/presence.py`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from controlplane.store.base import (
    Change,
    Compacted,
    Conflict,
    Listing,
    MemoryStore,
    Record,
    Store,
    StoreError,
)
from controlplane.store.file import FileStore

__all__ = ["Change", "Compacted", "Conflict", "FileStore", "Listing", "MemoryStore", "Record",
           "Store", "StoreError", "open_store", "parse_store_url"]

DEFAULT_ETCD_PREFIX = "/pointsman"


def parse_store_url(url: str) -> tuple[str, str]:
    """("file", path) | ("memory", "") | ("etcd", "host:port/prefix"); ValueError otherwise."""
    if url == "memory:":
        return "memory", ""
    if url.startswith("file:"):
        path = url[len("file:"):]
        if not path:
            raise ValueError("file: needs a folder, as in file:/var/lib/pointsman")
        return "file", path
    if url.startswith("etcd://"):
        parts = urlsplit(url)
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{url}: expected etcd://HOST:PORT[/PREFIX]")
        prefix = parts.path.rstrip("/") or DEFAULT_ETCD_PREFIX
        return "etcd", f"{parts.hostname}:{parts.port}{prefix}"
    if "://" in url:
        raise ValueError(f"{url}: unknown store (file:PATH, etcd://HOST:PORT[/PREFIX], memory:)")
    return "file", url


def open_store(url: str, *, lease_ttl: int = 10) -> Store:
    """The store for `url` (not opened yet: `await store.open()`)."""
    scheme, where = parse_store_url(url)
    if scheme == "memory":
        return MemoryStore()
    if scheme == "file":
        return FileStore(Path(where))
    from controlplane.store.etcd import EtcdStore  # imports aetcd only when used
    address, _, prefix = where.partition("/")
    host, _, port = address.rpartition(":")
    return EtcdStore(host, int(port), "/" + prefix, lease_ttl=lease_ttl)
