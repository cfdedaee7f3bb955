"""Mesh objects from files, compiled per node: the thin adapter between controlplane.mesh and
the control plane's snapshot cache (`pointsman controlplane --mesh PATH`).

- `MeshSource` watches PATH (a file or a folder of YAML streams, polled like FileSource:
  mtime, size and content hash; a change re-reads only the files that changed), validates the
  whole set (a bad object, or a set that is not acceptable as a whole, keeps the last good
  mesh serving and is reported once) and publishes the resolved mesh.
- `MeshCache` is a `SnapshotCache` whose `snapshot_for(node)` compiles the node's resources
  when the node is a mesh member (its cluster names a Service or Gateway; see
  controlplane.mesh.compile.node) and otherwise falls back to the node groups of
  `--resources`, if any. Snapshots are memoised per node identity and mesh generation.
- It is also an Observer hook: a sidecar whose listeners were ACKed is registered as an
  endpoint of its Service (its instance_ip on every Service port), until its stream closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

from envoy.config.core.v3 import base_pb2

from controlplane import logs
from controlplane.cache import CachedResource, Snapshot, SnapshotCache, TypeSnapshot, set_version
from controlplane.mesh import MeshError, MeshObject, read_objects, resolve
from controlplane.mesh.compile.compiler import MeshCompiler, NodeResources, ResourceSet
from controlplane.mesh.compile.memo import Endpoints
from controlplane.mesh.compile.node import MeshNode, NodeError, node_identity
from controlplane.mesh.errors import Location
from controlplane.mesh.load import mesh_files
from controlplane.mesh.resolve import Mesh
from controlplane.protocol.events import Acked, Action, NodeIdentified
from controlplane.resources import LISTENER, PUSH_ORDER
from protos.errors import ConfigError

log = logging.getLogger("pointsman.controlplane.mesh")


def snapshot_of(resources: NodeResources) -> Snapshot:
    """A Snapshot made of already packed resources (nothing is serialised again). Per type,
    a part's resources become a TypeSnapshot once (kept on the part, which every node with
    that part shares); several parts of one type are merged once per combination."""
    types: dict[str, TypeSnapshot] = {}
    for kind in PUSH_ORDER:
        parts = [part for part in resources.parts if part.by_type.get(kind.type_url)]
        types[kind.type_url] = _typed(kind.type_url, parts)
    overall = hashlib.blake2b(digest_size=6)
    for type_url in sorted(types):
        overall.update(types[type_url].version.encode())
    return Snapshot(MappingProxyType(types), overall.hexdigest())


_EMPTY = TypeSnapshot(set_version(()), MappingProxyType({}), ())
_MERGED: dict[tuple[int, ...], tuple[list[ResourceSet], TypeSnapshot]] = {}
MERGED_LIMIT = 4096


def _typed(type_url: str, parts: list[ResourceSet]) -> TypeSnapshot:
    if not parts:
        return _EMPTY
    if len(parts) == 1:
        found = parts[0].typed.get(type_url)
        if found is None:
            found = parts[0].typed[type_url] = _type_snapshot(parts[0].by_type[type_url])
        assert isinstance(found, TypeSnapshot)
        return found
    key = (hash(type_url), *(id(part) for part in parts))
    cached = _MERGED.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], parts, strict=True)):
        return cached[1]
    merged: dict[str, CachedResource] = {}
    for part in parts:
        merged.update(part.by_type[type_url])
    typed = _type_snapshot(merged)
    if len(_MERGED) >= MERGED_LIMIT:
        _MERGED.clear()
    _MERGED[key] = (parts, typed)  # the parts are kept alive, so their ids stay theirs
    return typed


def _type_snapshot(items: Mapping[str, CachedResource]) -> TypeSnapshot:
    ordered = tuple(items[name] for name in sorted(items))
    return TypeSnapshot(set_version(ordered), MappingProxyType(dict(items)), ordered)


class MeshCache(SnapshotCache):
    """Snapshots compiled per mesh node; raw node groups for everyone else."""

    MEMO_LIMIT = 10_000  # node identities remembered (nodes come and go)

    def __init__(self) -> None:
        super().__init__()
        self.compiler = MeshCompiler()
        self.mesh_generation = 0
        self._memo: dict[MeshNode, tuple[int, Snapshot]] = {}
        self._stream_nodes: dict[int, MeshNode] = {}
        self._registered: dict[int, tuple[tuple[str, str], str]] = {}
        self._endpoint_counts: Counter[tuple[tuple[str, str], str]] = Counter()
        self.node_errors: dict[str, str] = {}  # node id -> why it gets nothing
        self.last_change = ""  # "mesh" (a new mesh was loaded) or "endpoints" (a sidecar)

    @property
    def mesh(self) -> Mesh:
        return self.compiler.mesh

    def set_mesh(self, mesh: Mesh, compiler: MeshCompiler | None = None) -> None:
        """Serve `mesh`; `compiler` is one `prepare(mesh)` warmed in a worker thread."""
        if compiler is None:
            self.compiler.update(mesh=mesh)
        else:
            compiler.update(endpoints=self.compiler.endpoints)  # sidecars that came meanwhile
            self.compiler = compiler
        self.last_change = "mesh"
        self._changed()

    def prepare(self, mesh: Mesh) -> MeshCompiler:
        """In a worker thread: a compiler for `mesh`, with the units of the nodes connected
        now already built, so that swapping it in does not compile on the event loop."""
        compiler = self.compiler.fork(mesh)
        compiler.warm(list(self._memo.copy()))
        return compiler

    def _changed(self) -> None:
        self.mesh_generation += 1
        self.generation += 1
        for callback in list(self._watchers.values()):
            callback()

    def snapshot_for(self, node: base_pb2.Node) -> Snapshot:
        try:
            identity = node_identity(node, self.mesh)
        except NodeError as error:
            return self._refused(node, str(error))
        if identity is None:
            return super().snapshot_for(node)
        cached = self._memo.get(identity)
        if cached is not None and cached[0] == self.mesh_generation:
            return cached[1]
        try:
            snapshot = snapshot_of(self.compiler.compile_node(identity))
        except NodeError as error:
            return self._refused(node, str(error))
        self.node_errors.pop(node.id, None)
        if len(self._memo) > self.MEMO_LIMIT:
            self._memo.clear()
        self._memo[identity] = (self.mesh_generation, snapshot)
        return snapshot

    def _refused(self, node: base_pb2.Node, message: str) -> Snapshot:
        if self.node_errors.get(node.id) != message:
            self.node_errors[node.id] = message
            logs.event("mesh_node_rejected", logging.ERROR, node=node.id, error=message)
        return Snapshot.empty()

    # ---- endpoint registration (an Observer hook) -------------------------------------------

    def record(self, stream_id: int, node_id: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, NodeIdentified):
                self._identified(stream_id, action.node)
            elif isinstance(action, Acked) and action.type_url == LISTENER.type_url:
                self._register(stream_id)

    def _identified(self, stream_id: int, node: base_pb2.Node) -> None:
        try:
            identity = node_identity(node, self.mesh)
        except NodeError:
            return
        if identity is not None and identity.kind == "Service" and identity.instance_ip:
            self._stream_nodes[stream_id] = identity

    def _register(self, stream_id: int) -> None:
        node = self._stream_nodes.get(stream_id)
        if node is None or stream_id in self._registered or node.instance_ip is None:
            return
        entry = ((node.namespace, node.name), node.instance_ip)
        self._registered[stream_id] = entry
        self._endpoint_counts[entry] += 1
        if self._endpoint_counts[entry] == 1:
            logs.event("mesh_endpoint_added", service=f"{node.namespace}/{node.name}",
                       address=node.instance_ip, node=node.id)
            self._publish_endpoints()

    def stream_closed(self, stream_id: int) -> None:
        self._stream_nodes.pop(stream_id, None)
        entry = self._registered.pop(stream_id, None)
        if entry is None:
            return
        self._endpoint_counts[entry] -= 1
        if self._endpoint_counts[entry] <= 0:
            del self._endpoint_counts[entry]
            logs.event("mesh_endpoint_removed", service="/".join(entry[0]), address=entry[1])
            self._publish_endpoints()

    def _publish_endpoints(self) -> None:
        by_service: dict[tuple[str, str], list[str]] = {}
        for (service, address) in self._endpoint_counts:
            by_service.setdefault(service, []).append(address)
        endpoints = Endpoints()
        endpoints.by_service = {key: tuple(sorted(value)) for key, value in by_service.items()}
        self.compiler.update(endpoints=endpoints)
        self.last_change = "endpoints"
        self._changed()


class MeshSource:
    """Publishes the mesh under `root` into `cache`, at start and whenever it changes."""

    def __init__(self, root: Path, cache: MeshCache, *, interval: float = 0.5,
                 on_error: Callable[[ConfigError], None] | None = None,
                 on_loaded: Callable[[Mesh], None] | None = None) -> None:
        self.root = root
        self.cache = cache
        self.interval = interval
        self.on_error = on_error or (lambda error: log.error("mesh rejected: %s", error))
        self.on_loaded = on_loaded
        self.last_error: ConfigError | None = None
        self.loads = 0
        self._seen: tuple[tuple[str, int, int, str], ...] | None = None
        self._parsed: dict[str, tuple[tuple[int, int, str], list[MeshObject]]] = {}

    def __repr__(self) -> str:
        return f"MeshSource({self.root}, loads={self.loads}, error={self.last_error})"

    def poll(self) -> bool:
        return self._apply(self._load_if_changed())

    async def poll_in_thread(self) -> bool:
        return self._apply(await asyncio.to_thread(self._load_if_changed))

    async def run(self) -> None:
        while True:
            await self.poll_in_thread()
            await asyncio.sleep(self.interval)

    def _load_if_changed(self) -> tuple[Mesh, MeshCompiler] | ConfigError | None:
        try:
            marks = _fingerprint(self.root)
        except MeshError as error:
            return error
        if marks == self._seen:
            return None
        self._seen = marks
        try:
            mesh = self._load(marks)
            return mesh, self.cache.prepare(mesh)
        except MeshError as error:
            return error
        except (OSError, RecursionError, ValueError) as error:
            return ConfigError(f"cannot read: {error}", source=str(self.root))
        except Exception as error:  # a bug of ours must not stop serving the last good mesh
            log.exception("unexpected error loading %s", self.root)
            return ConfigError(f"internal error while loading: {error!r}", source=str(self.root))

    def _load(self, marks: tuple[tuple[str, int, int, str], ...]) -> Mesh:
        current = {path: (mtime, size, digest) for path, mtime, size, digest in marks}
        self._parsed = {path: item for path, item in self._parsed.items() if path in current}
        objects: list[MeshObject] = []
        for path, mark in current.items():
            cached = self._parsed.get(path)
            if cached is None or cached[0] != mark:
                try:
                    text = Path(path).read_text(encoding="utf-8")
                except UnicodeDecodeError as error:
                    raise MeshError(f"not UTF-8: {error}", Location(path)) from error
                found, errors = read_objects(text, path)
                if errors:
                    raise errors[0]
                cached = self._parsed[path] = (mark, found)
            objects += cached[1]
        mesh = resolve(objects)
        fatal = [problem for problem in mesh.problems if problem.severity == "error"]
        if fatal:
            raise MeshError(fatal[0].message, fatal[0].location)
        return mesh

    def _apply(self, result: tuple[Mesh, MeshCompiler] | ConfigError | None) -> bool:
        if result is None:
            return False
        if isinstance(result, ConfigError):
            self.last_error = result
            self.on_error(result)
            return False
        self.last_error = None
        self.loads += 1
        mesh, compiler = result
        self.cache.set_mesh(mesh, compiler)
        if self.on_loaded is not None:
            self.on_loaded(mesh)
        return True


def _fingerprint(root: Path) -> tuple[tuple[str, int, int, str], ...]:
    marks = []
    for path in mesh_files(root):
        try:
            stat = path.stat()
            digest = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
        except OSError:
            continue
        marks.append((str(path), stat.st_mtime_ns, stat.st_size, digest))
    if not marks and not root.exists():
        raise MeshError("no such file or folder", Location(str(root)))
    return tuple(marks)
