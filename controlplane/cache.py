"""Immutable, versioned snapshots per node group, and the cache that publishes them.

A `Snapshot` is built once per configuration change. Each resource is packed into an `Any`
(serialised) once, with its own content version (a hash of its bytes) so a delta-xDS server can
later compare per-resource versions. Each type has a version derived from its resources, so a
change to routes leaves the cluster version alone and clients subscribed to clusters hear nothing.
Encoded DiscoveryResponse bodies are memoised (`ResponseEncoder`) so a thousand clients receiving
the same set share one serialisation; only the nonce is appended per client.
"""

from __future__ import annotations

import functools
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from controlplane.resources import PUSH_ORDER

DEFAULT_GROUP = ""


@dataclass(frozen=True, eq=False)
class CachedResource:
    """One resource, packed once. `version` changes exactly when its bytes change."""

    type_url: str
    name: str
    version: str
    packed: any_pb2.Any

    @classmethod
    def of(cls, type_url: str, name: str, message: Message) -> CachedResource:
        packed = any_pb2.Any(type_url=type_url, value=message.SerializeToString(deterministic=True))
        digest = hashlib.blake2b(packed.value, digest_size=8).hexdigest()
        return cls(type_url, name, digest, packed)

    @functools.cached_property
    def delta_bytes(self) -> bytes:
        """This resource as a serialised discovery `Resource` (delta xDS), made once."""
        return discovery_pb2.Resource(name=self.name, version=self.version,
                                      resource=self.packed).SerializeToString()

    def __repr__(self) -> str:
        return f"CachedResource({self.name!r}, {self.version})"


@dataclass(frozen=True)
class TypeSnapshot:
    """All resources of one type in one snapshot, with a version naming that whole set."""

    version: str
    resources: Mapping[str, CachedResource]
    ordered: tuple[CachedResource, ...] = ()  # all resources sorted by name (wildcard answers)
    _changes: dict[str, frozenset[str]] = field(default_factory=dict, compare=False, repr=False)

    def changed_since(self, older: TypeSnapshot) -> frozenset[str]:
        """Names added, removed or changed since `older`; computed once per older version and
        shared by every delta stream moving from it to this one."""
        found = self._changes.get(older.version)
        if found is None:
            found = frozenset(
                name for name in older.resources.keys() | self.resources.keys()
                if _version(older, name) != _version(self, name))
            self._changes[older.version] = found
        return found


def _version(typed: TypeSnapshot, name: str) -> str | None:
    resource = typed.resources.get(name)
    return resource.version if resource is not None else None


def set_version(resources: Iterable[CachedResource]) -> str:
    digest = hashlib.blake2b(digest_size=6)
    for resource in sorted(resources, key=lambda item: item.name):
        digest.update(resource.name.encode())
        digest.update(b"\0")
        digest.update(resource.version.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Selection:
    """Some named resources of one type, sorted by name; `key` names exactly this content."""

    resources: tuple[CachedResource, ...]
    key: str


@dataclass(frozen=True)
class Snapshot:
    """What one node group sees: every type's resources, consistent with each other."""

    types: Mapping[str, TypeSnapshot]
    version: str
    # Named subscriptions are mostly alike (every Envoy asks EDS for the same clusters): the
    # selection for a given name set is computed once per snapshot and shared by all streams.
    _selections: dict[tuple[str, frozenset[str]], Selection] = field(
        default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, resources: Mapping[str, Mapping[str, Message]]) -> Snapshot:
        """`resources[type_url][name] -> message`; validated beforehand (sources/)."""
        types: dict[str, TypeSnapshot] = {}
        for kind in PUSH_ORDER:
            packed = {name: CachedResource.of(kind.type_url, name, message)
                      for name, message in resources.get(kind.type_url, {}).items()}
            ordered = tuple(packed[name] for name in sorted(packed))
            types[kind.type_url] = TypeSnapshot(set_version(ordered), MappingProxyType(packed),
                                                ordered)
        overall = hashlib.blake2b(digest_size=6)
        for type_url in sorted(types):
            overall.update(types[type_url].version.encode())
        return cls(MappingProxyType(types), overall.hexdigest())

    @classmethod
    def empty(cls) -> Snapshot:
        return cls.build({})

    def of_type(self, type_url: str) -> TypeSnapshot:
        return self.types.get(type_url) or TypeSnapshot(set_version(()), MappingProxyType({}))

    def select(self, type_url: str, names: frozenset[str]) -> Selection:
        """The existing resources among `names`, memoised per snapshot."""
        memo_key = (type_url, names)
        selection = self._selections.get(memo_key)
        if selection is None:
            available = self.of_type(type_url).resources
            chosen = tuple(available[name] for name in sorted(names) if name in available)
            selection = self._selections[memo_key] = Selection(chosen, set_version(chosen))
        return selection

    def count(self) -> int:
        return sum(len(item.resources) for item in self.types.values())


def group_for(node: base_pb2.Node, groups: Iterable[str]) -> str:
    """A node's group: a folder named after its node id wins, then one named after its cluster."""
    names = set(groups)
    if node.id and node.id in names:
        return node.id
    if node.cluster and node.cluster in names:
        return node.cluster
    return DEFAULT_GROUP


@dataclass
class SnapshotCache:
    """The latest snapshot per node group; watchers are told (synchronously) when it changes."""

    groups: dict[str, Snapshot] = field(default_factory=lambda: {DEFAULT_GROUP: Snapshot.empty()})
    generation: int = 0
    _watchers: dict[int, Callable[[], None]] = field(default_factory=dict)
    _next_watch: int = 0

    def set_snapshots(self, groups: Mapping[str, Snapshot]) -> None:
        if DEFAULT_GROUP not in groups:
            raise ValueError("the default group ('') must always have a snapshot")
        self.groups = dict(groups)
        self.generation += 1
        for callback in list(self._watchers.values()):
            callback()

    def snapshot_for(self, node: base_pb2.Node) -> Snapshot:
        return self.groups[group_for(node, self.groups)]

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every change; returns the function that cancels the watch."""
        key = self._next_watch
        self._next_watch += 1
        self._watchers[key] = callback

        def cancel() -> None:
            self._watchers.pop(key, None)
        return cancel

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)


class ResponseEncoder:
    """DiscoveryResponse bytes without the nonce, memoised by (type, version, resource set).

    Protobuf allows a message to be the concatenation of its fields, so the per-client part,
    field 5 (`nonce`), is appended to the shared bytes (protobuf encoding guide, "Last One Wins"
    and field order independence).
    """

    NONCE_FIELD_TAG = bytes([(5 << 3) | 2])

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._memo: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self.encoded = 0  # how many bodies were actually serialised (tests, metrics)

    def encode(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
               content_key: str, nonce: str) -> bytes:
        """`content_key` names the exact resources (a hash of their names and versions)."""
        key = (type_url, version, content_key)
        body = self._memo.get(key)
        if body is None:
            response = discovery_pb2.DiscoveryResponse(
                version_info=version, type_url=type_url,
                resources=[resource.packed for resource in resources])
            body = response.SerializeToString()
            self.encoded += 1
            self._memo[key] = body
            if len(self._memo) > self.capacity:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return body + self.NONCE_FIELD_TAG + _varint(len(nonce)) + nonce.encode()

    def encode_delta(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
                     removed: tuple[str, ...], nonce: str) -> bytes:
        """A DeltaDiscoveryResponse; bodies memoised like SotW ones (the type version and the
        names fix the content: resources come from the snapshot with that version)."""
        key = ("delta", type_url, version, tuple(resource.name for resource in resources),
               removed)
        body = self._memo.get(key)
        if body is None:
            body = _delta_body(type_url, version, resources, removed)
            self.encoded += 1
            self._memo[key] = body
            if len(self._memo) > self.capacity:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return body + self.NONCE_FIELD_TAG + _varint(len(nonce)) + nonce.encode()


def _delta_body(type_url: str, version: str, resources: tuple[CachedResource, ...],
                removed: tuple[str, ...]) -> bytes:
    parts = [_length_delimited(1, version.encode())]  # system_version_info
    parts += [_length_delimited(2, resource.delta_bytes) for resource in resources]
    parts.append(_length_delimited(4, type_url.encode()))
    parts += [_length_delimited(6, name.encode()) for name in removed]  # removed_resources
    return b"".join(parts)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return bytes([(field_number << 3) | 2]) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
