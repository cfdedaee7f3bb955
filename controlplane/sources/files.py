"""Resources from YAML/JSON files in Envoy's filesystem-subscription format, watched by polling.

Layout (docs/controlplane.md, "Node scoping"): PATH is one file, or a folder whose own files are
shared by every node and whose sub-folders are node groups: `PATH/<name>/` applies to nodes whose
node id, or else node cluster, is `<name>`; its resources replace shared ones of the same type
and name, or add to them. Hidden files and folders (`.name`) are ignored.

Polling every 0.5 s compares each file's path, mtime, size and content hash, so it needs no
inotify and sees edits that keep the size and mtime (fast successive writes). A file whose
status did not change since a scan that happened well after its mtime is not read again (the
"racy" window of git's index: only files modified within `RACY_SECONDS` of a scan are hashed
again while their status stays the same).

What was read is published into the cache (controlplane/cache/) with its write API: shared
files are the shared resource sets, each group folder a view of its own resources over them.
Only changed files are parsed again; the checks across files run on the shared set once and on
each group's own resources against it, so a group costs what it holds, not the shared set.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from google.protobuf.message import Message

from controlplane.cache import DEFAULT_GROUP, TYPE_URLS, ResourceCache, View
from controlplane.resources import BY_TYPE_URL
from controlplane.resources.consistency import (
    Index,
    LoadedResource,
    check_group,
    check_listener_addresses,
    check_references,
    index_unique,
    listener_addresses,
)
from controlplane.resources.pgv import validate_message
from controlplane.resources.walk import check_served
from protos.errors import ConfigError
from protos.loader import parse_any_resource, read_document

SUFFIXES = (".yaml", ".yml", ".json")
RACY_SECONDS = 2.0
log = logging.getLogger("pointsman.controlplane.files")


def read_resources(path: Path) -> list[LoadedResource]:
    """Parse and validate every resource of one file."""
    source = str(path)
    document = read_document(path)
    if document is None:
        return []
    if not isinstance(document, dict) or not isinstance(document.get("resources", []), list):
        raise ConfigError("expected a mapping with a 'resources' list", source=source)
    unknown = sorted(set(document) - {"resources", "version_info"})
    if unknown:
        raise ConfigError(f"unknown top-level key {unknown[0]!r}", field=unknown[0], source=source)
    return [_read_one(obj, source, index)
            for index, obj in enumerate(document.get("resources") or [])]


def _read_one(obj: object, source: str, index: int) -> LoadedResource:
    try:
        message = parse_any_resource(obj, source=source, index=index)
    except ConfigError as error:  # nested @type errors come without the resource: add it
        raise error.within(resource=_name_hint(obj), source=source) from error
    type_url = "type.googleapis.com/" + message.DESCRIPTOR.full_name
    kind = BY_TYPE_URL.get(type_url)
    if kind is None:
        raise ConfigError(f"{message.DESCRIPTOR.full_name} is not an xDS resource type served "
                          f"here (Listener, RouteConfiguration, Cluster, ClusterLoadAssignment, "
                          f"Secret)", field=f"resources[{index}].@type", source=source)
    name = kind.name_of(message)
    try:
        kind.validate(message)  # what Pointsman adds: required pieces, unsupported fields
        check_served(message)  # nothing that needs an xDS type we do not serve
        validate_message(message)  # Envoy's own (validate.rules) constraints
    except ConfigError as error:
        raise error.within(field=f"resources[{index}]", resource=name, source=source) from error
    return LoadedResource(type_url, name, message, source, index,
                          references=tuple(kind.references(message)))


def _name_hint(obj: object) -> str:
    if not isinstance(obj, dict):
        return ""
    return str(obj.get("name") or obj.get("cluster_name") or obj.get("clusterName") or "")


def config_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.suffix in SUFFIXES and not path.name.startswith("."))


def group_folders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir()
                  if path.is_dir() and not path.name.startswith("."))


Reader = Callable[[Path], list[LoadedResource]]


def _read_folder_tree(folder: Path, read: Reader) -> list[LoadedResource]:
    loaded = [item for path in config_files(folder) for item in read(path)]
    for child in group_folders(folder):
        loaded.extend(_read_folder_tree(child, read))
    return loaded


@dataclass(frozen=True)
class Config:
    """A validated configuration: the shared set and each group's own resources."""

    shared: Index
    groups: Mapping[str, Index] = field(default_factory=dict)


def load_config(root: Path, read: Reader = read_resources) -> Config:
    """Read, validate and cross-check everything under `root`; ConfigError on the first problem.
    `read` parses one file (FileSource passes a memoised one)."""
    if not root.exists():
        raise ConfigError("no such file or folder", source=str(root))
    if root.is_file():
        return Config(_checked(index_unique(read(root))))
    shared = _checked(index_unique(item for path in config_files(root) for item in read(path)))
    addresses = listener_addresses(shared)
    groups = {}
    for folder in group_folders(root):
        own = index_unique(_read_folder_tree(folder, read))
        check_group(shared, own, addresses)
        groups[folder.name] = own
    return Config(shared, groups)


def _checked(index: Index) -> Index:
    check_references(index)
    check_listener_addresses(index)
    return index


def publish(cache: ResourceCache, config: Config) -> None:
    """Make `config` what `cache` serves, in one commit: the shared sets, a view per group
    (its own resources over the shared ones), the default view, and no other view."""
    with cache.transaction():
        for type_url in TYPE_URLS:
            cache.set_resources(type_url, _messages(config.shared, type_url))
        for key in [key for key in cache.views if key not in config.groups]:
            if key != DEFAULT_GROUP:
                cache.remove_view(key)
        cache.set_view(DEFAULT_GROUP)
        for name, own in config.groups.items():
            cache.set_view(name, own={type_url: _messages(own, type_url) for type_url in own})


def _messages(index: Index, type_url: str) -> dict[str, Message]:
    return {name: item.message for name, item in index.get(type_url, {}).items()}


def load_snapshots(root: Path, read: Reader = read_resources) -> dict[str, View]:
    """Every group's view of the configuration under `root` (validated as served)."""
    cache = ResourceCache()
    publish(cache, load_config(root, read))
    return dict(cache.views)


def _culprit(error: BaseException, root: Path) -> str:
    return str(getattr(error, "filename", None) or root)


Mark = tuple[str, int, int, str]  # path, mtime (ns), size, content hash


def config_paths(root: Path) -> list[str]:
    """Every config file under `root` (symlinks followed, hidden names skipped), sorted."""
    if root.is_file():
        return [str(root)]
    found: list[str] = []
    pending = [str(root)] if root.is_dir() else []
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir():
                    pending.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1] in SUFFIXES:
                    found.append(entry.path)
            except OSError:
                continue
    return sorted(found)


def fingerprint(root: Path, known: dict[str, tuple[Mark, int, float]] | None = None
                ) -> tuple[Mark, ...]:
    """What changes when any config file under `root` is added, removed or edited. With
    `known` (path -> (mark, inode, when scanned), updated here), a file whose status is the
    same and whose mtime was more than RACY_SECONDS before the scan that hashed it is not read
    again."""
    return marks_of(config_paths(root), known)


def marks_of(paths: list[str], known: dict[str, tuple[Mark, int, float]] | None = None
             ) -> tuple[Mark, ...]:
    """`fingerprint` of these files (the mesh source lists its own)."""
    known = {} if known is None else known
    marks = []
    scanned = time.time()
    for path in paths:
        try:
            stat = os.stat(path)
            previous = known.get(path)
            if previous is not None and previous[0][1:3] == (stat.st_mtime_ns, stat.st_size) \
                    and previous[1] == stat.st_ino \
                    and previous[2] - stat.st_mtime_ns / 1e9 > RACY_SECONDS:
                marks.append(previous[0])
                continue
            with open(path, "rb") as handle:
                digest = hashlib.blake2b(handle.read(), digest_size=8).hexdigest()
        except OSError:
            continue  # removed between listing and reading: the next poll sees it
        mark = (path, stat.st_mtime_ns, stat.st_size, digest)
        known[path] = (mark, stat.st_ino, scanned)
        marks.append(mark)
    seen = {mark[0] for mark in marks}
    for path in [path for path in known if path not in seen]:
        del known[path]
    return tuple(marks)


LoadedT = TypeVar("LoadedT")


class PolledSource(Generic[LoadedT]):
    """A folder or file polled for changes (FileSource, MeshSource): the reading and parsing
    (`_load_if_changed`) run in a worker thread so the loop keeps serving; what loaded is
    published on the loop (`_publish`), atomically; an invalid change keeps the last good one
    and is reported once per bad state (`on_error`, by default an error log line)."""

    rejected = "config rejected"  # the default report's words

    def __init__(self, root: Path, *, interval: float = 0.5,
                 on_error: Callable[[ConfigError], None] | None = None,
                 logger: logging.Logger = log) -> None:
        self.root = root
        self.interval = interval
        self.on_error = on_error or (lambda error: logger.error("%s: %s", self.rejected, error))
        self.last_error: ConfigError | None = None
        self.loads = 0
        self._stats: dict[str, tuple[Mark, int, float]] = {}  # marks_of's memory

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root}, loads={self.loads}, error={self.last_error})"

    def poll(self) -> bool:
        """Reload when the files changed; True when something new was published."""
        return self._apply(self._load_if_changed())

    async def poll_in_thread(self) -> bool:
        """`poll()` with the reading and parsing done in a worker thread."""
        return self._apply(await asyncio.to_thread(self._load_if_changed))

    async def run(self) -> None:
        """Poll forever (cancel to stop)."""
        while True:
            await self.poll_in_thread()
            await asyncio.sleep(self.interval)

    def _apply(self, result: LoadedT | ConfigError | None) -> bool:
        if result is None:
            return False
        if isinstance(result, ConfigError):
            self.last_error = result
            self.on_error(result)
            return False
        self.last_error = None
        self.loads += 1
        self._publish(result)
        return True

    def _load_if_changed(self) -> LoadedT | ConfigError | None:
        """What changed, loaded (runs in a worker thread); None when nothing did."""
        raise NotImplementedError

    def _publish(self, loaded: LoadedT) -> None:
        raise NotImplementedError


class FileSource(PolledSource[Config]):
    """Publishes `root` into `cache` at start and whenever it changes; keeps the last good
    snapshot when a change is invalid, reporting the error once per bad state."""

    def __init__(self, root: Path, cache: ResourceCache, *, interval: float = 0.5,
                 on_error: Callable[[ConfigError], None] | None = None) -> None:
        super().__init__(root, interval=interval, on_error=on_error)
        self.cache = cache
        self.files_parsed = 0
        self._seen: tuple[Mark, ...] | None = None
        # Parsed files by path, with the fingerprint they were parsed at: a change to one file
        # of many re-parses that file only.
        self._parsed: dict[str, tuple[tuple[int, int, str], list[LoadedResource]]] = {}

    def _load_if_changed(self) -> Config | ConfigError | None:
        marks = fingerprint(self.root, self._stats)
        if marks == self._seen:
            return None
        self._seen = marks
        current = {path: (mtime, size, digest) for path, mtime, size, digest in marks}
        self._parsed = {path: parsed for path, parsed in self._parsed.items()
                        if path in current}

        def read(path: Path) -> list[LoadedResource]:
            mark = current.get(str(path))
            cached = self._parsed.get(str(path))
            if cached is not None and mark is not None and cached[0] == mark:
                return cached[1]
            loaded = read_resources(path)
            self.files_parsed += 1
            if mark is not None:
                self._parsed[str(path)] = (mark, loaded)
            return loaded

        try:
            return load_config(self.root, read)
        except ConfigError as error:
            return error
        except (OSError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as error:
            # Whatever a broken file does to the parsers, the server keeps the last good config.
            return ConfigError(f"cannot read: {error}", source=_culprit(error, self.root))
        except Exception as error:  # a bug of ours must not take the serving process down
            log.exception("unexpected error loading %s", self.root)
            return ConfigError(f"internal error while loading: {error!r}", source=str(self.root))

    def _publish(self, loaded: Config) -> None:
        publish(self.cache, loaded)
