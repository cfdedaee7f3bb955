"""Mesh objects from files, compiled per node: the thin adapter between controlplane.mesh and
the control plane's resource cache (`pointsman controlplane --mesh PATH`).

- `MeshSource` watches PATH (a file or a folder of YAML streams, polled like FileSource:
  mtime, size and content hash; a change re-reads only the files that changed), validates the
  whole set (a bad object, or a set that is not acceptable as a whole, keeps the last good
  mesh serving and is reported once) and publishes the resolved mesh.
- `MeshCache` is a `ResourceCache` (controlplane/cache/) whose views for mesh members are
  written by the compiler. A node whose cluster names a Service or Gateway (see
  controlplane.mesh.compile.node) resolves to the view keyed by its identity, `mesh:...`;
  other nodes to the node groups of `--resources`, if any. A view is compiled when its node
  first asks (a connecting node), is recompiled on every mesh or endpoint change while a node
  of it is connected, and dropped at the first change after none is.
- A view holds references, never copies: each compiler part (ResourceSet: what a namespace's
  sidecars share, the outbound listeners of an outbound_ip, a sidecar's inbound listeners...)
  becomes one cache `ResourceSet` per type once, shared by every view that has the part, and
  two parts of one type an `Overlay` of the two, made once per pair. So a sidecar costs its
  references, a change costs one packing per changed resource, and the cache wakes only the
  streams whose view's version changed (a new endpoint of one Service wakes the sidecars whose
  namespace part sends to it).
- It is also an Observer hook: a sidecar is registered as an endpoint of its Service (its
  instance_ip on every Service port), until its stream closes, once it has ACKed its
  listeners and, when its view holds Secrets (its SVID), its Secrets too: a listener waiting
  for its certificate is still warming and refuses callers (Envoy's listener warming, "Listener
  discovery" in Envoy's docs), so registering at the LDS ACK alone let the first callers in
  before the sidecar could answer them (Istio adds a pod to EDS only once it is ready).
  A sidecar whose node says `health_reports: true` is registered only once it has also
  reported its application healthy over its ADS stream, removed when it reports it unhealthy
  and added again when healthy (controlplane/sources/readiness.py, protocol/health.py).
  Registrations arriving together are published together, 0.1 s after the last of a burst
  and at most 5 s after its first (one recompilation per burst, not one per sidecar: a storm
  of 10,000 sidecars would otherwise recompile every connected view 10,000 times, and push
  each of them as many endpoint updates; istiod's PILOT_DEBOUNCE_AFTER/MAX are 100 ms and
  10 s). At 3,000 sidecars a 1 s maximum cost 97 CPU-s to converge, 5 s 30 CPU-s
  (docs/benchmarks.md).
- With a CA (`identity_secrets`, controlplane/ca), each member's view also holds its
  identity's Secrets, `default` (its SVID) and `ROOTCA` (the trust bundle), one ResourceSet
  per identity shared by the sidecars of that Service; `renew_secrets(now)` re-issues the
  SVIDs due and recompiles only the views of those identities (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from envoy.config.core.v3 import base_pb2

from controlplane import logs
from controlplane.ca import CaError, IdentitySecrets
from controlplane.cache import (
    TYPE_URLS,
    CachedResource,
    Overlay,
    ResourceCache,
    ResourceSet,
    TypeContent,
    View,
    node_group_candidates,
)
from controlplane.mesh import MeshError, MeshObject, read_objects, resolve
from controlplane.mesh.compile.compiler import MeshCompiler, NodeResources
from controlplane.mesh.compile.compiler import ResourceSet as Part
from controlplane.mesh.compile.memo import Endpoints, Workload
from controlplane.mesh.compile.node import MeshNode, NodeError, node_identity
from controlplane.mesh.errors import Location
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.load import mesh_files
from controlplane.mesh.resolve import Mesh
from controlplane.protocol.events import Acked, Action, HealthReported, NodeIdentified
from controlplane.protocol.pacing import Debounce
from controlplane.resources import LISTENER, SECRET
from controlplane.sources.files import Mark, PolledSource, config_paths, marks_of
from controlplane.sources.readiness import StreamReadiness, reports_health
from protos.errors import ConfigError

READY_TYPES = frozenset((LISTENER.type_url, SECRET.type_url))  # ACKed: it can serve

log = logging.getLogger("pointsman.controlplane.mesh")

# Sidecars registering in a burst are published together (seconds: after the last of the
# burst, at most after its first).
ENDPOINT_BATCH_AFTER = 0.1
ENDPOINT_BATCH_MAX = 5.0
# A flush recompiles every connected view and wakes each stream whose view changed (an EDS
# push to every sidecar that sees the Service): the next one waits 8 times as long as this one
# took, so registrations cost at most about a ninth of the loop, however fast they come.
ENDPOINT_BATCH_COOLDOWN = 8.0
MESH_PREFIX = "mesh:"  # the keys of compiled views (node groups are folder names)
REFUSED_PREFIX = "mesh-refused:"  # never a view: a node resolving there gets nothing


def view_key(node: MeshNode) -> str:
    parts: tuple[str, ...] = (node.kind, node.namespace, node.name, node.id,
                              node.instance_ip or "", node.app_ip, node.outbound_ip)
    if node.kind == "Workload":
        parts += (repr(node.labels), repr(node.ports))
    return MESH_PREFIX + "|".join(parts)


def own_types(resources: NodeResources) -> dict[str, TypeContent]:
    """A node's content per type, from its parts' shared sets (nothing is serialised or
    copied: see the module docstring)."""
    types: dict[str, TypeContent] = {}
    for type_url in TYPE_URLS:
        sets = [_part_set(part, type_url) for part in resources.parts
                if part.by_type.get(type_url)]
        if sets:
            types[type_url] = _layered(type_url, sets)
    return types


def _part_set(part: Part, type_url: str) -> ResourceSet:
    found = part.typed.get(type_url)
    if not isinstance(found, ResourceSet):
        found = part.typed[type_url] = ResourceSet(type_url, part.by_type[type_url])
    return found


_PAIRS: dict[tuple[int, ...], tuple[list[ResourceSet], TypeContent]] = {}
PAIRS_LIMIT = 4096


def _layered(type_url: str, sets: list[ResourceSet]) -> TypeContent:
    """One set as it is; several as an Overlay of the first and the rest, made once per
    combination (every sidecar of a namespace with the same inbound clusters shares it)."""
    if len(sets) == 1:
        return sets[0]
    key = tuple(id(item) for item in sets)
    cached = _PAIRS.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], sets, strict=True)):
        return cached[1]
    rest = sets[1] if len(sets) == 2 else ResourceSet(type_url, {
        item.name: item for part in sets[1:] for item in part})
    layered = Overlay(sets[0], rest)
    if len(_PAIRS) >= PAIRS_LIMIT:
        _PAIRS.clear()
    _PAIRS[key] = (sets, layered)  # the sets are kept alive, so their ids stay theirs
    return layered


class MeshCache(ResourceCache):
    """Views compiled per mesh node; raw node groups for everyone else."""

    MEMO_LIMIT = 10_000  # nodes whose identity is remembered (nodes come and go)

    def __init__(self) -> None:
        super().__init__(candidates=self._candidates)
        self.compiler = MeshCompiler()
        self.mesh_generation = 0
        self._identities: dict[str, MeshNode] = {}  # view key -> the node compiled there
        self._resolved: dict[int, tuple[base_pb2.Node, tuple[str, ...], MeshNode | None]] = {}
        self._stream_nodes: dict[int, MeshNode] = {}
        self._registered: dict[int, tuple[tuple[str, str], str]] = {}
        # stream -> the types it has ACKed (LDS, SDS) and its application's health
        self._readiness: dict[int, StreamReadiness] = {}
        self._endpoint_counts: Counter[tuple[tuple[str, str], str]] = Counter()
        self._workload_streams: dict[int, tuple[str, Workload]] = {}
        self._workload_counts: Counter[tuple[str, Workload]] = Counter()
        self._publish_pending = False
        self._batch = Debounce(after=ENDPOINT_BATCH_AFTER, maximum=ENDPOINT_BATCH_MAX,
                               cooldown=ENDPOINT_BATCH_COOLDOWN)
        self.node_errors: dict[str, str] = {}  # node id -> why it gets nothing
        self.last_change = ""  # "mesh" (a new mesh was loaded), "endpoints" (a sidecar), "secrets"
        self.identity_secrets: IdentitySecrets | None = None  # the CA's, when there is one
        self._secret_sets: dict[tuple[str, str], tuple[object, ResourceSet]] = {}

    @property
    def mesh(self) -> Mesh:
        return self.compiler.mesh

    def use_identity(self, identity: MeshIdentity) -> None:
        """Certificates are issued (controlplane/ca): compile automatic mTLS and the Istio
        security policies with this trust domain (docs/mesh-security.md). Before serving."""
        self.compiler = MeshCompiler(self.compiler.mesh, self.compiler.endpoints, identity)

    @property
    def groups(self) -> Mapping[str, View]:
        """The node groups (of --resources), without the compiled views."""
        return {key: view for key, view in self.views.items()
                if not key.startswith(MESH_PREFIX)}

    def set_mesh(self, mesh: Mesh, compiler: MeshCompiler | None = None) -> None:
        """Serve `mesh`; `compiler` is one `prepare(mesh)` warmed in a worker thread."""
        if compiler is None:
            self.compiler.update(mesh=mesh)
        else:
            compiler.update(endpoints=self.compiler.endpoints)  # sidecars that came meanwhile
            self.compiler = compiler
        self.mesh_generation += 1
        self._resolved.clear()
        with self._change("mesh"):
            self._recompile()
        self.resolve_again()  # a node may be a member now, or no longer, or another one

    def prepare(self, mesh: Mesh) -> MeshCompiler:
        """In a worker thread: a compiler for `mesh`, with the units of the nodes connected
        now already built, so that swapping it in does not compile on the event loop."""
        compiler = self.compiler.fork(mesh)
        compiler.warm(list(self._identities.copy().values()))
        return compiler

    @contextlib.contextmanager
    def _change(self, what: str) -> Iterator[None]:
        self.last_change = what
        try:
            with self.transaction():
                yield
        finally:
            self.last_change = ""

    def _recompile(self) -> None:
        """Every view a connected node resolves to, compiled again (units unchanged are
        memo hits); views nobody is connected to are dropped."""
        for key, identity in list(self._identities.items()):
            if self.watched(key):
                self._compile(key, identity)
            else:
                del self._identities[key]
                self.remove_view(key)

    def _compile(self, key: str, identity: MeshNode) -> None:
        try:
            resources = self.compiler.compile_node(identity)
        except NodeError as error:
            self._identities.pop(key, None)
            self.remove_view(key)
            self._refused(identity.id, str(error))
            return
        self.node_errors.pop(identity.id, None)
        self._identities[key] = identity
        own = own_types(resources)
        secrets = self._secrets_of(identity)
        if secrets is not None:
            compiled = own.get(SECRET.type_url)
            own[SECRET.type_url] = secrets if compiled is None else ResourceSet(
                SECRET.type_url, {**{item.name: item for item in compiled},
                                  **{item.name: item for item in secrets}})
        self.set_view(key, own=own, shared={type_url: () for type_url in TYPE_URLS})

    # ---- identities (controlplane/ca) -------------------------------------------------------

    def _secrets_of(self, identity: MeshNode) -> ResourceSet | None:
        """`default` and `ROOTCA` of the node's identity, one set per SVID issued."""
        if self.identity_secrets is None:
            return None
        who = (identity.namespace, identity.name)
        try:
            messages = self.identity_secrets.secrets_for(*who,
                                                         datetime.datetime.now(datetime.UTC))
        except CaError as error:  # an expired CA: the node gets its config, no SVID
            self._refused(identity.id, str(error))
            return None
        held = self._secret_sets.get(who)
        if held is None or held[0] is not messages:
            packed = {name: CachedResource.of(SECRET.type_url, name, message)
                      for name, message in messages.items()}
            held = self._secret_sets[who] = (messages, ResourceSet(SECRET.type_url, packed))
        return held[1]

    def renew_secrets(self, now: datetime.datetime) -> list[tuple[str, str]]:
        """Re-issue the SVIDs due at `now` and push them: only the views of those identities
        are compiled again (their other types are memo hits and keep their versions)."""
        if self.identity_secrets is None:
            return []
        connected = {(item.namespace, item.name) for key, item in self._identities.items()
                     if self.watched(key)}
        for who in self.identity_secrets.identities():
            if who not in connected:  # no sidecar of it left: issue afresh when one comes
                self.identity_secrets.forget(who)
                self._secret_sets.pop(who, None)
        due = self.identity_secrets.renew_due(now)
        if due:
            renewed = set(due)
            with self._change("secrets"):
                for key, identity in list(self._identities.items()):
                    if (identity.namespace, identity.name) in renewed and self.watched(key):
                        self._compile(key, identity)
            for namespace, service in due:
                logs.event("svid_renewed", identity=f"{namespace}/{service}")
        return due

    # ---- nodes -> views ---------------------------------------------------------------------

    def _candidates(self, node: base_pb2.Node) -> tuple[str, ...]:
        return self._resolve(node)[0]

    def _resolve(self, node: base_pb2.Node) -> tuple[tuple[str, ...], MeshNode | None]:
        """The node's view keys and mesh identity, remembered per node object (a stream
        keeps its node) until the mesh changes."""
        remembered = self._resolved.get(id(node))
        if remembered is not None and remembered[0] is node:
            return remembered[1], remembered[2]
        identity = None
        try:
            identity = node_identity(node, self.mesh)
        except NodeError as error:
            self._refused(node.id, str(error))
            keys: tuple[str, ...] = (REFUSED_PREFIX + node.id,)
        else:
            keys = node_group_candidates(node) if identity is None else (view_key(identity),)
        if len(self._resolved) >= self.MEMO_LIMIT:
            self._resolved.clear()
        self._resolved[id(node)] = (node, keys, identity)  # node kept: its id stays its own
        return keys, identity

    def view_for(self, node: base_pb2.Node) -> View:
        """The node's view; a mesh member's is compiled on its first request."""
        keys, identity = self._resolve(node)
        if identity is not None and keys[0] not in self.views:
            with self.transaction(quiet=True):  # a node connecting changes no configuration
                self._compile(keys[0], identity)
        return super().view_for(node)

    snapshot_for = view_for

    def _refused(self, node_id: str, message: str) -> None:
        if self.node_errors.get(node_id) != message:
            self.node_errors[node_id] = message
            logs.event("mesh_node_rejected", logging.ERROR, node=node_id, error=message)

    # ---- endpoint registration (an Observer hook) -------------------------------------------

    def record(self, stream_id: int, node_id: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, NodeIdentified):
                self._identified(stream_id, action.node)
            elif isinstance(action, Acked) and action.type_url in READY_TYPES:
                self._readiness.setdefault(stream_id, StreamReadiness()).acked.add(
                    action.type_url)
                if self._ready(stream_id):
                    self._register_endpoint(stream_id)
            elif isinstance(action, HealthReported):
                self._health_reported(stream_id, node_id, action)

    def _health_reported(self, stream_id: int, node_id: str, report: HealthReported) -> None:
        """The application is ready (registered once the ACKs are there too) or not
        (deregistered); a report that changes nothing changes nothing."""
        readiness = self._readiness.setdefault(stream_id, StreamReadiness())
        if readiness.health == report:
            return
        readiness.health = report
        if readiness.reports_health:
            logs.event("mesh_app_health", logging.INFO if report.healthy else logging.WARNING,
                       node=node_id, healthy=report.healthy, message=report.message)
        if not report.healthy and readiness.reports_health:
            self._deregister(stream_id)
        elif self._ready(stream_id):
            self._register_endpoint(stream_id)

    def health_of(self, stream_id: int) -> tuple[str, str]:
        """The application health a stream reported and why, for `pointsman status`
        (readiness.py)."""
        readiness = self._readiness.get(stream_id)
        return readiness.status() if readiness is not None else ("", "")

    def _ready(self, stream_id: int) -> bool:
        """The stream's sidecar has ACKed its listeners, and its Secrets if its view has any,
        and its application is healthy if it reports health."""
        readiness = self._readiness.get(stream_id)
        if readiness is None or LISTENER.type_url not in readiness.acked \
                or not readiness.healthy:
            return False
        acked = readiness.acked
        node = self._stream_nodes.get(stream_id)
        if node is None or SECRET.type_url in acked:
            return True
        view = self.views.get(view_key(node))
        return view is None or not len(view.of_type(SECRET.type_url))

    def _identified(self, stream_id: int, node: base_pb2.Node) -> None:
        try:
            identity = node_identity(node, self.mesh)
            health = reports_health(node)
        except NodeError as error:
            self._refused(node.id, str(error))
            return
        self._readiness.setdefault(stream_id, StreamReadiness()).reports_health = health
        if identity is not None and identity.kind in ("Service", "Workload") \
                and identity.instance_ip:
            self._stream_nodes[stream_id] = identity

    def _register_endpoint(self, stream_id: int) -> None:
        node = self._stream_nodes.get(stream_id)
        if node is None or stream_id in self._registered or node.instance_ip is None:
            return
        if node.kind == "Workload":
            self._register_workload(stream_id, node, node.instance_ip)
            return
        entry = ((node.namespace, node.name), node.instance_ip)
        self._registered[stream_id] = entry
        self._endpoint_counts[entry] += 1
        if self._endpoint_counts[entry] == 1:
            logs.event("mesh_endpoint_added", service=f"{node.namespace}/{node.name}",
                       address=node.instance_ip, node=node.id)
            self._publish_endpoints()

    def _register_workload(self, stream_id: int, node: MeshNode, instance_ip: str) -> None:
        """A workload's labels and ports, for the Services whose selector picks it."""
        if stream_id in self._workload_streams:
            return
        entry = (node.namespace, Workload(node.name, instance_ip, node.labels, node.ports))
        self._workload_streams[stream_id] = entry
        self._workload_counts[entry] += 1
        if self._workload_counts[entry] == 1:
            logs.event("mesh_workload_added", workload=f"{node.namespace}/{node.name}",
                       address=instance_ip, node=node.id,
                       labels=",".join(f"{key}={value}" for key, value in node.labels))
            self._publish_endpoints()

    def _workload_closed(self, stream_id: int) -> None:
        entry = self._workload_streams.pop(stream_id, None)
        if entry is None:
            return
        self._workload_counts[entry] -= 1
        if self._workload_counts[entry] <= 0:
            del self._workload_counts[entry]
            logs.event("mesh_workload_removed", workload=f"{entry[0]}/{entry[1].name}",
                       address=entry[1].instance_ip)
            self._publish_endpoints()

    def stream_closed(self, stream_id: int) -> None:
        self._deregister(stream_id)
        self._stream_nodes.pop(stream_id, None)
        self._readiness.pop(stream_id, None)

    def _deregister(self, stream_id: int) -> None:
        """The stream's sidecar is no endpoint (any more)."""
        self._workload_closed(stream_id)
        entry = self._registered.pop(stream_id, None)
        if entry is None:
            return
        self._endpoint_counts[entry] -= 1
        if self._endpoint_counts[entry] <= 0:
            del self._endpoint_counts[entry]
            logs.event("mesh_endpoint_removed", service="/".join(entry[0]), address=entry[1])
            self._publish_endpoints()

    def _publish_endpoints(self) -> None:
        """Debounced when a loop runs, at once otherwise. Registrations arriving together cost
        one recompilation: published 0.1 s after the last of a burst and at most 5 s after
        its first (protocol/pacing.py's Debounce, as istiod's PILOT_DEBOUNCE_AFTER/MAX), and
        not before 8 times the previous flush's own time has passed (ENDPOINT_BATCH_COOLDOWN)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_endpoints()
            return
        self._batch.changed(loop.time())
        if not self._publish_pending:
            self._publish_pending = True
            loop.call_later(self._batch.after, self._maybe_flush)

    def _maybe_flush(self) -> None:
        loop = asyncio.get_running_loop()
        if self._batch.due(loop.time()):
            started = time.perf_counter()
            self._flush_endpoints()
            self._batch.done(loop.time(), time.perf_counter() - started)
            return
        deadline = self._batch.deadline()
        if deadline is not None:
            loop.call_later(max(0.0, deadline - loop.time()), self._maybe_flush)

    def _flush_endpoints(self) -> None:
        self._publish_pending = False
        self._batch.first = None
        by_service: dict[tuple[str, str], list[str]] = {}
        for (service, address) in self._endpoint_counts:
            by_service.setdefault(service, []).append(address)
        endpoints = Endpoints()
        endpoints.by_service = {key: tuple(sorted(value)) for key, value in by_service.items()}
        workloads: dict[str, list[Workload]] = {}
        for namespace, workload in self._workload_counts:
            workloads.setdefault(namespace, []).append(workload)
        endpoints.workloads = {key: tuple(sorted(value)) for key, value in workloads.items()}
        self.compiler.update(endpoints=endpoints)
        with self._change("endpoints"):
            self._recompile()


class MeshSource(PolledSource[tuple[Mesh, MeshCompiler]]):
    """Publishes the mesh under `root` into `cache`, at start and whenever it changes."""

    rejected = "mesh rejected"

    def __init__(self, root: Path, cache: MeshCache, *, interval: float = 0.5,
                 on_error: Callable[[ConfigError], None] | None = None,
                 on_loaded: Callable[[Mesh], None] | None = None) -> None:
        super().__init__(root, interval=interval, on_error=on_error, logger=log)
        self.cache = cache
        self.on_loaded = on_loaded
        self._seen: tuple[tuple[str, int, int, str], ...] | None = None
        self._parsed: dict[str, tuple[tuple[int, int, str], list[MeshObject]]] = {}

    def _load_if_changed(self) -> tuple[Mesh, MeshCompiler] | ConfigError | None:
        try:
            marks = _fingerprint(self.root, self._stats)
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

    def _publish(self, loaded: tuple[Mesh, MeshCompiler]) -> None:
        mesh, compiler = loaded
        self.cache.set_mesh(mesh, compiler)
        if self.on_loaded is not None:
            self.on_loaded(mesh)


def _fingerprint(root: Path, known: dict[str, tuple[Mark, int, float]] | None = None
                 ) -> tuple[Mark, ...]:
    """As FileSource's: a file whose status did not change since a scan well after its mtime
    is not read again (a poll of 1,000 files hashed them all, every 0.5 s)."""
    if not root.exists():
        mesh_files(root)  # raises the error that names it
    # mesh_files' files in its order, listed with os.scandir (pathlib's rglob and is_file
    # were most of a poll's cost at 1,000 files)
    marks = marks_of(sorted(config_paths(root), key=Path), known)
    if not marks and not root.exists():
        raise MeshError("no such file or folder", Location(str(root)))
    return tuple(marks)
