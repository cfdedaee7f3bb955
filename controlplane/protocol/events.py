"""What a state-of-the-world stream asks its adapter to do (Push) or reports (the rest)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from envoy.config.core.v3 import base_pb2

from controlplane.cache import CachedResource, TypeContent


class ProtocolError(Exception):
    """The peer broke the xDS protocol; the adapter ends the stream with INVALID_ARGUMENT."""


@dataclass(frozen=True)
class Push:
    """Send one DiscoveryResponse."""

    type_url: str
    version: str
    nonce: str
    resources: TypeContent  # iterating yields the resources, sorted by name
    content_key: str = ""  # names exactly this content

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
class NackRecord:
    """A subscription's last NACK, kept for /status. Once the client ACKs a version sent
    after it, the NACK is marked superseded (by that version, at that time) rather than shown
    as if it still held."""

    version: str  # the version that was refused
    message: str
    at: float  # the stream's `now` when the NACK arrived
    superseded_by: str | None = None  # the version ACKed after it
    superseded_at: float | None = None

    def acked(self, version: str, now: float) -> NackRecord:
        """This record after an ACK of `version` (unchanged if already superseded)."""
        if self.superseded_by is not None:
            return self
        return replace(self, superseded_by=version, superseded_at=now)


@dataclass(frozen=True)
class HealthReported:
    """The sidecar's application is ready (healthy) or not, with why (protocol/health.py)."""

    healthy: bool
    message: str = ""


@dataclass(frozen=True)
class StaleNonceIgnored:
    type_url: str
    nonce: str


Action = (Push | DeltaPush | NodeIdentified | Subscribed | Acked | Nacked | StaleNonceIgnored
          | HealthReported)
