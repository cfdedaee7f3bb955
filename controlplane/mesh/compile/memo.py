"""Incremental compilation: each unit remembers what it read, and is rebuilt only when a read
would now answer differently.

A unit (a cluster, a virtual host, a route table, a listener) is a function of a `View`. The
view records every lookup it answers, with a fingerprint of the answer (an object's key and
revision, an attachment's outcome, a list of those). When the mesh changes, a unit's recorded
lookups are asked again of the new mesh: if every fingerprint is the same, the old output is
still right and is kept (the same packed resource, so nothing is re-serialised or re-sent);
otherwise the unit is rebuilt. A unit that uses another unit records that unit's version,
so a change propagates up exactly as far as it matters. Nothing here lists dependencies by
hand: what a unit reads is what it depends on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from controlplane.cache import CachedResource
from controlplane.mesh.backendtls import BackendTls
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.objects import MeshObject, ObjectKey
from controlplane.mesh.resolve import Attachment, Backend, Mesh, listener_ready

T = TypeVar("T")


@dataclass(frozen=True, order=True)
class Workload:
    """A registered workload sidecar: what a Service's selector and named targetPorts read."""

    name: str
    instance_ip: str
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[tuple[str, int], ...] = ()


class Endpoints:
    """Where the sidecars registered as each Service are, and the workloads of each namespace
    (filled in by the control plane)."""

    def __init__(self) -> None:
        self.by_service: dict[tuple[str, str], tuple[str, ...]] = {}
        self.workloads: dict[str, tuple[Workload, ...]] = {}  # namespace -> sorted

    def of(self, namespace: str, name: str) -> tuple[str, ...]:
        return self.by_service.get((namespace, name), ())

    def workloads_in(self, namespace: str) -> tuple[Workload, ...]:
        return self.workloads.get(namespace, ())


def fingerprint(value: Any) -> Hashable:
    if isinstance(value, MeshObject):
        return ("obj", value.key, value.revision)
    if isinstance(value, Attachment):
        return ("att", value.route.key, value.route.revision, value.index, value.accepted,
                value.reason, value.ports, value.listeners)
    if isinstance(value, Backend):
        return ("be", value.ok, value.reason, fingerprint(value.service), value.port)
    if isinstance(value, BackendTls):  # its sources name the objects behind it (deps.py)
        return ("btls", value.sources, value)
    if isinstance(value, list | tuple):
        return tuple(fingerprint(item) for item in value)
    return value  # scalars; frozen dataclasses (ports, specs) compare by value


class View:
    """The compiler's window on the mesh: every answer is recorded in `reads`."""

    def __init__(self, mesh: Mesh, endpoints: Endpoints, memo: Memo) -> None:
        self.mesh = mesh
        self.endpoints = endpoints
        self.memo = memo
        self.reads: dict[tuple[Any, ...], Hashable] = {}

    @property
    def identity(self) -> MeshIdentity | None:
        """The compiler's setting (fixed for its Memo's life, so not a read)."""
        return self.memo.identity

    def _keep(self, key: tuple[Any, ...], value: T) -> T:
        self.reads[key] = fingerprint(value)
        return value

    # Every method below is a lookup the units may make; `Memo` replays them by name.

    def get(self, kind: str, namespace: str, name: str) -> MeshObject | None:
        return self._keep(("get", kind, namespace, name), self.mesh.get(kind, namespace, name))

    def service(self, namespace: str, name: str) -> MeshObject | None:
        return self.get("Service", namespace, name)

    def services_in(self, namespace: str) -> list[MeshObject]:
        return self._keep(("services_in", namespace),
                          [item for item in self.mesh.of_kind("Service")
                           if item.namespace == namespace])

    def services_with_port(self, port: int) -> list[MeshObject]:
        return self._keep(("services_with_port", port), self.mesh.services_with_port(port))

    def ports_in_use(self) -> tuple[int, ...]:
        return self._keep(("ports_in_use",), self.mesh.ports_in_use())

    def protocol(self, namespace: str, name: str, port: int) -> str:
        return self._keep(("protocol", namespace, name, port),
                          self.mesh.protocol(namespace, name, port))

    def routes_on_service_port(self, namespace: str, name: str, port: int) -> list[Attachment]:
        return self._keep(("routes_on_service_port", namespace, name, port),
                          list(self.mesh.on_service_port.get((namespace, name, port), [])))

    def consumer_namespaces(self, namespace: str, name: str, port: int) -> tuple[str, ...]:
        """Namespaces with consumer routes on a Service port (GAMMA)."""
        found = {item.route.namespace
                 for item in self.mesh.on_service_port.get((namespace, name, port), [])
                 if item.route.namespace != namespace}
        return self._keep(("consumer_namespaces", namespace, name, port), tuple(sorted(found)))

    def backend_tls(self, namespace: str, name: str, port: int) -> BackendTls | None:
        """The BackendTLSPolicy settings of a Service port."""
        return self._keep(("backend_tls", namespace, name, port),
                          self.mesh.backend_tls.get((namespace, name, port)))

    def frontend_validation(self, gateway: ObjectKey, listener: str
                            ) -> tuple[bytes, str] | None:
        """An HTTPS listener's client certificate validation (CA bundle, mode), if any."""
        return self._keep(("frontend_validation", gateway, listener),
                          self.mesh.frontend_validation.get((gateway, listener)))

    def client_certificate(self, gateway: ObjectKey) -> tuple[bytes, bytes] | None:
        """A Gateway's certificate for backends (spec.tls.backend), when it resolves."""
        return self._keep(("client_certificate", gateway),
                          self.mesh.client_certificates.get(gateway))

    def routes_on_listener(self, gateway: ObjectKey, listener: str) -> list[Attachment]:
        return self._keep(("routes_on_listener", gateway, listener),
                          list(self.mesh.on_listener.get((gateway, listener), [])))

    def listener_ready(self, gateway: ObjectKey, listener: str) -> bool:
        return self._keep(("listener_ready", gateway, listener),
                          listener_ready(self.mesh, gateway, listener))

    def backend(self, route: ObjectKey, rule: int, index: int) -> Backend | None:
        return self._keep(("backend", route, rule, index),
                          self.mesh.backends.get((route, rule, index)))

    def mirror(self, route: ObjectKey, rule: int, index: int) -> Backend | None:
        return self._keep(("mirror", route, rule, index),
                          self.mesh.mirrors.get((route, rule, index)))

    def policy(self, kind: str, target: ObjectKey, section: str | None = None
               ) -> MeshObject | None:
        return self._keep(("policy", kind, target, section),
                          self.mesh.policy_for(kind, target, section))

    def in_namespaces(self, kind: str, namespaces: tuple[str, ...]) -> list[MeshObject]:
        """The objects of a kind in these namespaces, oldest first (the Istio security
        policies of a Service's namespace and the root namespace)."""
        return self._keep(("in_namespaces", kind, namespaces),
                          [item for item in self.mesh.of_kind(kind)
                           if item.namespace in namespaces])

    def slices(self, namespace: str, name: str) -> list[MeshObject]:
        return self._keep(("slices", namespace, name),
                          list(self.mesh.slices.get((namespace, name), [])))

    def sidecars(self, namespace: str, name: str) -> tuple[str, ...]:
        """The only read of Endpoints: MeshCompiler.update invalidates exactly its users."""
        return self._keep(("sidecars", namespace, name), self.endpoints.of(namespace, name))

    def workloads(self, namespace: str) -> tuple[Workload, ...]:
        """The workloads registered in `namespace` (Services with a selector pick theirs)."""
        return self._keep(("workloads", namespace), self.endpoints.workloads_in(namespace))

    def all_workloads(self) -> tuple[tuple[str, Workload], ...]:
        """Every registered workload with its namespace (pods reached by address: pods.py)."""
        return self._keep(("all_workloads",), tuple(
            (namespace, item) for namespace in sorted(self.endpoints.workloads)
            for item in self.endpoints.workloads[namespace]))

    def unit(self, key: Hashable, build: Callable[[View], T]) -> T:
        """Another unit's output; its version is recorded as a read."""
        value, version = self.memo.entry(key, build, self.mesh, self.endpoints)
        self.reads[("unit", key)] = version
        return value


@dataclass
class _Entry(Generic[T]):
    value: T
    reads: dict[tuple[Any, ...], Hashable]
    build: Callable[[View], T]
    version: int
    checked: int  # the mesh generation it was last found valid for


@dataclass
class Memo:
    """Units by key. `generation` increases with every new mesh (or endpoint change)."""

    KEEP = 64

    entries: dict[Hashable, _Entry[Any]] = field(default_factory=dict)
    generation: int = 0
    built: Counter[str] = field(default_factory=Counter)  # per unit kind (key[0]): tests, stats
    _versions: int = 0
    # read -> the units that made it: to invalidate exactly the users of what changed, when
    # that is known (endpoints), instead of checking every unit again (a new mesh).
    dependents: dict[Hashable, set[Hashable]] = field(default_factory=dict)
    identity: MeshIdentity | None = None  # mTLS between sidecars (compile/mtls.py)

    def get(self, key: Hashable, build: Callable[[View], T], mesh: Mesh,
            endpoints: Endpoints) -> T:
        return self.entry(key, build, mesh, endpoints)[0]

    def entry(self, key: Hashable, build: Callable[[View], T], mesh: Mesh,
              endpoints: Endpoints) -> tuple[T, int]:
        found = self.entries.get(key)
        if found is not None and (found.checked == self.generation
                                  or self._still_valid(found, mesh, endpoints)):
            found.checked = self.generation
            return found.value, found.version
        view = View(mesh, endpoints, self)
        value = build(view)
        self._depend(key, view.reads)
        if found is not None and same(found.value, value):
            # Rebuilt to the same result: keep the old object and version, so the units that
            # used it stay valid ("early cutoff").
            found.reads, found.checked = view.reads, self.generation
            return found.value, found.version
        self._versions += 1
        self.entries[key] = _Entry(value, view.reads, build, self._versions, self.generation)
        kind = key[0] if isinstance(key, tuple) and key else str(key)
        self.built[str(kind)] += 1
        return value, self._versions

    def _still_valid(self, entry: _Entry[Any], mesh: Mesh, endpoints: Endpoints) -> bool:
        replay = View(mesh, endpoints, self)
        for read, seen in entry.reads.items():
            if read[0] == "unit":
                child = self.entries.get(read[1])
                if child is None:
                    return False
                if self.entry(read[1], child.build, mesh, endpoints)[1] != seen:
                    return False
            elif fingerprint_of(replay, read) != seen:
                return False
        return True

    def _depend(self, key: Hashable, reads: dict[tuple[Any, ...], Hashable]) -> None:
        for read in reads:
            self.dependents.setdefault(read, set()).add(key)

    def advance(self) -> None:
        """A new mesh: every unit must be checked again before reuse. Units nobody asked for
        in the last KEEP generations are dropped (they come back if asked)."""
        self.generation += 1
        if self.generation % self.KEEP == 0:
            oldest = self.generation - self.KEEP
            self.entries = {key: entry for key, entry in self.entries.items()
                            if entry.checked >= oldest}
            self._reindex()

    def invalidate(self, reads: list[tuple[Any, ...]]) -> int:
        """Only these reads may answer differently (new endpoints of some Services): the units
        that made them, and the units that used those, are checked again; no other. Returns
        how many units were marked."""
        marked: set[Hashable] = set()
        frontier = [key for read in reads for key in self.dependents.get(read, ())]
        while frontier:
            key = frontier.pop()
            if key in marked:
                continue
            marked.add(key)
            entry = self.entries.get(key)
            if entry is not None:
                entry.checked = -1
            frontier += self.dependents.get(("unit", key), ())
        return len(marked)

    def _reindex(self) -> None:
        self.dependents = {}
        for key, entry in self.entries.items():
            self._depend(key, entry.reads)

    def fork(self) -> Memo:
        """A copy another thread may warm up while this one keeps serving (controlplane/
        sources/mesh.py): the entries are copied, to be checked again before reuse."""
        entries = {key: replace(entry, checked=-1) for key, entry in self.entries.copy().items()}
        forked = Memo(entries, 0, Counter(), self._versions, identity=self.identity)
        forked._reindex()
        return forked


def same(old: Any, new: Any) -> bool:
    """Whether a rebuilt unit's output is the same as before: packed resources by their
    content version, anything else by value."""
    if isinstance(old, CachedResource) and isinstance(new, CachedResource):
        return (old.type_url, old.name, old.version) == (new.type_url, new.name, new.version)
    try:
        return bool(old == new)
    except Exception:  # values that cannot be compared are not the same
        return False


def fingerprint_of(view: View, read: tuple[Any, ...]) -> Hashable:
    method = getattr(view, read[0])
    method(*read[1:])
    return view.reads[read]
