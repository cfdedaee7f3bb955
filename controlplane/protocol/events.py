"""What a state-of-the-world stream asks its adapter to do (Push) or reports (the rest)."""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from controlplane.cache import CachedResource


class ProtocolError(Exception):
    """The peer broke the xDS protocol; the adapter ends the stream with INVALID_ARGUMENT."""


@dataclass(frozen=True)
class Push:
    """Send one DiscoveryResponse."""

    type_url: str
    version: str
    nonce: str
    resources: tuple[CachedResource, ...]
    content_key: str = ""  # hash of the resources' names and versions (memoised encoding)

    def __repr__(self) -> str:
        return (f"Push({self.type_url.rsplit('.', 1)[-1]}, v={self.version}, nonce={self.nonce}, "
                f"{len(self.resources)} resources)")


@dataclass(frozen=True)
class DeltaPush:
    """Send one DeltaDiscoveryResponse: changed resources and names removed (or absent)."""

    type_url: str
    version: str  # system_version_info: the type's snapshot version, for debugging only
    nonce: str
    resources: tuple[CachedResource, ...]
    removed: tuple[str, ...]

    def __repr__(self) -> str:
        return (f"DeltaPush({self.type_url.rsplit('.', 1)[-1]}, nonce={self.nonce}, "
                f"{len(self.resources)} resources, removed={list(self.removed)})")


@dataclass(frozen=True)
class NodeIdentified:
    node: base_pb2.Node


@dataclass(frozen=True)
class Subscribed:
    type_url: str
    wildcard: bool
    names: frozenset[str]


@dataclass(frozen=True)
class Acked:
    type_url: str
    version: str
    nonce: str
    latency: float  # seconds from the push to this ACK


@dataclass(frozen=True)
class Nacked:
    type_url: str
    version: str  # the version that was refused
    nonce: str
    message: str


@dataclass(frozen=True)
class StaleNonceIgnored:
    type_url: str
    nonce: str


Action = Push | DeltaPush | NodeIdentified | Subscribed | Acked | Nacked | StaleNonceIgnored
