"""Response bytes from cached pieces: no resource is serialised again to answer a client.

A SotW DiscoveryResponse is its `version_info` field, the content's encoded `resources` fields
(one shared chunk per set, controlplane/cache/content.py), its `type_url` and the per-client
`nonce`, joined in one copy (protobuf fields may come in any order and a repeated field in
several runs: protobuf encoding guide, "Order"). Delta responses are memoised by their content
(type version and names) within a byte budget, and only the nonce is appended per client.
"""

from __future__ import annotations

from collections import OrderedDict

from controlplane.cache.content import TypeContent
from controlplane.cache.resource import CachedResource, length_delimited

DELTA_MEMO_BYTES = 64 * 1024 * 1024


class ResponseEncoder:
    """Encodes DiscoveryResponse / DeltaDiscoveryResponse bytes for one server."""

    NONCE_FIELD = 5

    def __init__(self, memo_bytes: int = DELTA_MEMO_BYTES) -> None:
        self.memo_bytes = memo_bytes
        self._memo: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._held = 0
        self._type_fields: dict[str, bytes] = {}
        self.encoded = 0  # delta bodies actually built (tests)

    def encode(self, type_url: str, version: str, content: TypeContent, nonce: str) -> bytes:
        return b"".join(self.parts(type_url, version, content, nonce))

    def parts(self, type_url: str, version: str, content: TypeContent, nonce: str
              ) -> list[bytes]:
        """The response in pieces (mostly shared chunks): its size is known before the one
        copy that joins them."""
        return [length_delimited(1, version.encode()), *content.chunks(),
                self._type_field(type_url), length_delimited(self.NONCE_FIELD, nonce.encode())]

    def encode_delta(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
                     removed: tuple[str, ...], nonce: str) -> bytes:
        return b"".join(self.delta_parts(type_url, version, resources, removed, nonce))

    def delta_parts(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
                    removed: tuple[str, ...], nonce: str) -> list[bytes]:
        """A DeltaDiscoveryResponse; the type version and the names fix the content (resources
        come from the view with that version)."""
        key = (type_url, version, tuple(resource.name for resource in resources), removed)
        body = self._memo.get(key)
        if body is None:
            body = self._delta_body(type_url, version, resources, removed)
            self.encoded += 1
            self._remember(key, body)
        else:
            self._memo.move_to_end(key)
        return [body, length_delimited(self.NONCE_FIELD, nonce.encode())]

    def _type_field(self, type_url: str) -> bytes:
        found = self._type_fields.get(type_url)
        if found is None:
            found = self._type_fields[type_url] = length_delimited(4, type_url.encode())
        return found

    def _delta_body(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
                    removed: tuple[str, ...]) -> bytes:
        parts = [length_delimited(1, version.encode())]  # system_version_info
        parts += [length_delimited(2, resource.delta_bytes) for resource in resources]
        parts.append(self._type_field(type_url))
        parts += [length_delimited(6, name.encode()) for name in removed]  # removed_resources
        return b"".join(parts)

    def _remember(self, key: tuple[object, ...], body: bytes) -> None:
        if len(body) > self.memo_bytes // 8:
            return  # a big one-off (a client's first full sync): not worth keeping
        self._memo[key] = body
        self._held += len(body)
        while self._held > self.memo_bytes:
            _, dropped = self._memo.popitem(last=False)
            self._held -= len(dropped)
