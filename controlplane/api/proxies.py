"""Where every connected sidecar and Gateway proxy stands, per xDS type, as
`istioctl proxy-status` shows it: SYNCED, STALE, NACKED (with the error and since when) or
NOT_SENT; and which mesh objects a NACK concerns.

`ProxyTracker` is an Observer hook (controlplane/observe.py): it sees every stream's actions
(node identified, pushes, ACKs, NACKs) and reads the streams' subscription state. A type is
SYNCED when the proxy ACKed exactly what the control plane has for it now (SotW: the content
key of the set sent; delta: the versions the client holds), STALE while a push waits for its
ACK or the mesh moved on, NACKED while the last reply refused a version. `synced_revision` is
the latest store revision whose mesh the proxy had ACKed entirely: an object changed at
revision R is on a proxy once its synced_revision >= R. A NACK's suspects are the objects the
refused resources were compiled from, among those that changed since the last ACK
(controlplane/mesh/compile/deps.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from envoy.config.core.v3 import base_pb2

from controlplane.cache import CachedResource, Snapshot
from controlplane.mesh import ObjectKey
from controlplane.mesh.compile.deps import Provenance
from controlplane.mesh.compile.node import NodeError, metadata_of, node_identity
from controlplane.protocol.delta import DeltaSubscription
from controlplane.protocol.events import (
    Acked,
    Action,
    DeltaPush,
    HealthReported,
    Nacked,
    NodeIdentified,
    Push,
)
from controlplane.protocol.sotw import Subscription
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from controlplane.sources.mesh import MeshCache

SYNCED, STALE, NACKED, NOT_SENT = "SYNCED", "STALE", "NACKED", "NOT_SENT"
PUSHES_KEPT = 4  # per type: pushes waiting for their reply


@dataclass(frozen=True)
class TypeState:
    type: str  # CDS, EDS, LDS, RDS, SDS
    state: str
    sent_version: str = ""
    acked_version: str = ""
    error: str = ""
    since: float = 0.0  # epoch seconds
    suspects: tuple[ObjectKey, ...] = ()
    nacked_revision: int = 0  # the store revision of the mesh the refused version came from


@dataclass(frozen=True)
class ProxyRecord:
    """One connected proxy as any replica reports it (stored as JSON in etcd presence)."""

    node_id: str
    control_plane: str
    kind: str = ""  # Service, Gateway; "" not a mesh member
    namespace: str = ""
    name: str = ""
    address: str = ""  # instance_ip
    app_ip: str = ""
    outbound_ip: str = ""
    connected_at: float = 0.0
    types: tuple[TypeState, ...] = ()
    synced_revision: int = 0
    error: str = ""
    # Its application's health as the sidecar reports it (sources/readiness.py): "" when it
    # does not report health, else HEALTHY, UNHEALTHY or NOT_REPORTED (not an endpoint yet).
    health: str = ""
    health_message: str = ""

    @property
    def worst(self) -> str:
        states = {item.state for item in self.types}
        for state in (NACKED, STALE):
            if state in states:
                return state
        return SYNCED

    @property
    def suspects(self) -> frozenset[ObjectKey]:
        return frozenset(key for item in self.types for key in item.suspects)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["types"] = [{**item.__dict__, "suspects": [list(key) for key in item.suspects]}
                        for item in self.types]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProxyRecord:
        types = tuple(TypeState(**{**item, "suspects": tuple(
            ObjectKey(*key) for key in item.get("suspects", []))}) for item in data["types"])
        return cls(**{**data, "types": types})


@dataclass(frozen=True)
class _Nack:
    message: str
    at: float
    suspects: tuple[ObjectKey, ...]
    revision: int


@dataclass
class _TypeTrack:
    # nonce -> (resources, removed names or None for a SotW push, the store revision of the
    # mesh it came from)
    pushes: dict[str, tuple[Iterable[CachedResource], tuple[str, ...] | None, int]] = field(
        default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # name -> version the proxy ACKed
    nack: _Nack | None = None
    state: str = ""
    since: float = 0.0


@dataclass
class _StreamTrack:
    node: base_pb2.Node | None = None
    types: dict[str, _TypeTrack] = field(default_factory=dict)
    synced_revision: int = 0


class ProxyTracker:
    """Observer hook keeping each stream's proxy status; `records()` evaluates them now."""

    def __init__(self, cache: MeshCache, replica: str, revision: Callable[[], int],
                 clock: Callable[[], float] = time.time) -> None:
        self.cache = cache
        self.replica = replica
        self.revision = revision
        self.clock = clock
        self.streams: Callable[[], dict[int, Any]] = dict  # the Observer's, once attached
        self.provenance = Provenance(lambda: cache.compiler.memo)  # the current one
        self.on_change: list[Callable[[], None]] = []
        self.version = 0  # changes whenever a proxy's state may have
        self._tracks: dict[int, _StreamTrack] = {}

    def attach(self, observer: Any) -> None:
        self.streams = lambda: observer.streams

    # ---- the Observer hook ------------------------------------------------------------------

    def record(self, stream_id: int, node_id: str, actions: list[Action]) -> None:
        track = self._tracks.setdefault(stream_id, _StreamTrack())
        changed = False
        for action in actions:
            if isinstance(action, NodeIdentified):
                track.node, changed = action.node, True
            elif isinstance(action, Push | DeltaPush):
                self._pushed(track, action, self.revision())
            elif isinstance(action, Acked):
                self._acked(track, action)
                changed = True
            elif isinstance(action, Nacked):
                self._nacked(track, action)
                changed = True
            elif isinstance(action, HealthReported):
                changed = True
        if changed:
            self.evaluate(stream_id)
            self._changed()

    def stream_closed(self, stream_id: int) -> None:
        if self._tracks.pop(stream_id, None) is not None:
            self._changed()

    def _changed(self) -> None:
        self.version += 1
        for callback in list(self.on_change):
            callback()

    @staticmethod
    def _pushed(track: _StreamTrack, push: Push | DeltaPush, revision: int) -> None:
        typed = track.types.setdefault(push.type_url, _TypeTrack())
        removed = push.removed if isinstance(push, DeltaPush) else None
        typed.pushes[push.nonce] = (push.resources, removed, revision)
        while len(typed.pushes) > PUSHES_KEPT:
            del typed.pushes[next(iter(typed.pushes))]

    @staticmethod
    def _acked(track: _StreamTrack, ack: Acked) -> None:
        typed = track.types.setdefault(ack.type_url, _TypeTrack())
        sent = typed.pushes.pop(ack.nonce, None)
        typed.nack = None
        if sent is None:
            return
        resources, removed, _ = sent
        # A SotW LDS or CDS response is the whole set; an EDS, RDS or SDS one may carry only
        # the resources that changed (xDS protocol, "state of the world" variants).
        replaces = removed is None and ack.type_url in (LISTENER.type_url, CLUSTER.type_url)
        held = {} if replaces else dict(typed.held)
        for name in removed or ():
            held.pop(name, None)
        held.update((resource.name, resource.version) for resource in resources)
        typed.held = held

    def _nacked(self, track: _StreamTrack, nack: Nacked) -> None:
        typed = track.types.setdefault(nack.type_url, _TypeTrack())
        sent = typed.pushes.pop(nack.nonce, None)
        resources, revision = (sent[0], sent[2]) if sent is not None else ((), 0)
        changed = [resource for resource in resources
                   if typed.held.get(resource.name) != resource.version]
        suspects = tuple(sorted(self.provenance.objects_of_all(changed)))
        typed.nack = _Nack(nack.message, self.clock(), suspects, revision)

    # ---- evaluation -------------------------------------------------------------------------

    def records(self) -> list[ProxyRecord]:
        out = []
        for stream_id in sorted(self.streams()):
            record = self.evaluate(stream_id)
            if record is not None:
                out.append(record)
        return out

    def evaluate(self, stream_id: int) -> ProxyRecord | None:
        stream_record = self.streams().get(stream_id)
        track = self._tracks.get(stream_id)
        if stream_record is None or track is None or stream_record.stream.node is None:
            return None
        stream = stream_record.stream
        node = stream.node
        snapshot = stream.resolve_snapshot()
        now = self.clock()
        types = []
        for type_url, subscription in sorted(stream.subscriptions.items()):
            typed = track.types.setdefault(type_url, _TypeTrack())
            state = _state(subscription, snapshot, typed)
            if state != typed.state:
                typed.state = state
                typed.since = typed.nack.at if state == NACKED and typed.nack else now
            nack = typed.nack
            types.append(TypeState(
                _short(type_url), state, subscription.sent_version, subscription.acked_version,
                nack.message if nack else "", typed.since, nack.suspects if nack else (),
                nack.revision if nack else 0))
        if types and all(item.state in (SYNCED, NOT_SENT) for item in types):
            track.synced_revision = self.revision()
        return ProxyRecord(node.id, self.replica, **self._identity(node),
                           connected_at=stream_record.connected_at, types=tuple(types),
                           synced_revision=track.synced_revision,
                           **self._health(stream_id))

    def _health(self, stream_id: int) -> dict[str, str]:
        health, message = self.cache.health_of(stream_id)
        return {"health": health, "health_message": message}

    def _identity(self, node: base_pb2.Node) -> dict[str, Any]:
        try:
            identity = node_identity(node, self.cache.mesh)
        except NodeError as error:
            return {"error": str(error), "name": node.cluster}
        if identity is None:
            return {"name": node.cluster}
        metadata = metadata_of(node)
        return {"kind": identity.kind, "namespace": identity.namespace,
                "name": identity.name, "address": identity.instance_ip or "",
                "app_ip": str(metadata.get("app_ip") or ""),
                "outbound_ip": str(metadata.get("outbound_ip") or ""),
                "error": self.cache.node_errors.get(node.id, "")}


def _state(subscription: Subscription | DeltaSubscription, snapshot: Snapshot,
           typed: _TypeTrack) -> str:
    if typed.nack is not None:
        return NACKED
    if not subscription.nonce:
        return STALE if _desired(subscription, snapshot) else NOT_SENT
    if subscription.awaiting_reply:
        return STALE
    return SYNCED if _in_sync(subscription, snapshot) else STALE


def _desired(subscription: Subscription | DeltaSubscription, snapshot: Snapshot
             ) -> dict[str, str]:
    resources = snapshot.of_type(subscription.type_url).resources
    names = resources.keys() if subscription.wildcard else set(subscription.names) & set(
        resources)
    return {name: resources[name].version for name in names}


def _in_sync(subscription: Subscription | DeltaSubscription, snapshot: Snapshot) -> bool:
    if isinstance(subscription, DeltaSubscription):
        return dict(subscription.known) == _desired(subscription, snapshot)
    typed = snapshot.of_type(subscription.type_url)
    if subscription.wildcard:
        return subscription.sent_key == typed.version
    selected = snapshot.select(subscription.type_url, subscription.names)
    if subscription.sent_key == selected.key:
        return True
    return _holds(subscription, {resource.name: resource.version for resource in selected})


def _holds(subscription: Subscription, desired: dict[str, str]) -> bool:
    """Whether what was sent, less the names the client has since dropped, is what it asks
    for now. A SotW client that stops asking for names of a type whose responses need not hold
    the state of the world (EDS, RDS, SDS) gets no response for it (xds_protocol.rst,
    "Unsubscribing from resources"): it holds the rest of what it was sent."""
    sent = subscription.sent
    held: dict[str, str] = {}
    for name in subscription.names:
        resource = sent.get(name) if sent is not None else None
        if resource is not None:
            held[name] = resource.version
    return held == desired


XDS_NAMES = {CLUSTER.type_url: "CDS", ENDPOINT.type_url: "EDS", LISTENER.type_url: "LDS",
             ROUTE.type_url: "RDS", SECRET.type_url: "SDS"}


def _short(type_url: str) -> str:
    return XDS_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class ControlPlaneInfo:
    id: str
    version: str
    revision: int
    started: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
