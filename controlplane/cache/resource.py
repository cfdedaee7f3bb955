"""One resource version, serialised once, and the protobuf wire pieces built from it.

A `CachedResource` is made once per resource version, whatever number of views and streams
hold it: they hold references. Its `version` is a hash of its bytes, so it changes exactly when
its content changes (delta xDS compares it with what each client holds). The pieces of a
response are built from its bytes by concatenation: protobuf allows a message to be the
concatenation of its fields in any order, and a repeated field to be split over several runs
(protobuf encoding guide, "Order" and "Last One Wins").
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message


class CachedResource:
    """One resource, packed once. `version` changes exactly when its bytes change."""

    def __init__(self, type_url: str, name: str, version: str, packed: any_pb2.Any) -> None:
        self.type_url = type_url
        self.name = name
        self.version = version
        self.packed = packed
        self.source: object = None  # the message it was packed from (kept by the cache)

    @classmethod
    def of(cls, type_url: str, name: str, message: Message) -> CachedResource:
        return cls.of_bytes(type_url, name, message.SerializeToString(deterministic=True))

    @classmethod
    def of_bytes(cls, type_url: str, name: str, value: bytes) -> CachedResource:
        """From the serialised message (a worker receives resources this way)."""
        digest = hashlib.blake2b(value, digest_size=8).hexdigest()
        return cls(type_url, name, digest, any_pb2.Any(type_url=type_url, value=value))

    @property
    def value(self) -> bytes:
        return bytes(self.packed.value)

    @functools.cached_property
    def sotw_field(self) -> bytes:
        """This resource as one `resources` entry (field 2) of a DiscoveryResponse."""
        return length_delimited(2, self.packed.SerializeToString())

    @functools.cached_property
    def delta_bytes(self) -> bytes:
        """This resource as a serialised discovery `Resource` (delta xDS), made once."""
        return discovery_pb2.Resource(name=self.name, version=self.version,
                                      resource=self.packed).SerializeToString()

    def same_content(self, other: CachedResource | None) -> bool:
        return other is not None and other.version == self.version and (
            other.packed.value == self.packed.value)

    def __repr__(self) -> str:
        return f"CachedResource({self.name!r}, {self.version})"


def set_version(resources: Iterable[CachedResource]) -> str:
    """Names one set of resources (order-independent): a hash of its (name, version) pairs."""
    digest = hashlib.blake2b(digest_size=6)
    for resource in sorted(resources, key=lambda item: item.name):
        digest.update(resource.name.encode())
        digest.update(b"\0")
        digest.update(resource.version.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def combine(*parts: str) -> str:
    """A version named by other versions (a view's type from its shared and own parts)."""
    digest = hashlib.blake2b(digest_size=6)
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def length_delimited(field_number: int, payload: bytes) -> bytes:
    return bytes([(field_number << 3) | 2]) + varint(len(payload)) + payload


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)
