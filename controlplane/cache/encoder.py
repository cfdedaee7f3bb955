"""Response bytes from cached pieces: no resource is serialised again to answer a client.

A SotW DiscoveryResponse is its `version_info` field, the content's encoded `resources` fields
(one shared chunk per set, controlplane/cache/content.py), its `type_url` and the per-client
`nonce`, joined in one copy (protobuf fields may come in any order and a repeated field in
several runs: protobuf encoding guide, "Order"). Streams number their responses alike (the
nonce is a per-stream counter: controlplane/protocol/sotw.py), so the streams of equal views
send byte-identical responses: a response met a second time is kept (within a byte budget) and
every later stream sends that same object, joined once for all of them. Delta responses are
memoised by their content (type version and names) within a byte budget, and only the nonce is
appended per client.
"""

from __future__ import annotations

from collections import OrderedDict

from controlplane.cache.content import TypeContent
from controlplane.cache.resource import CachedResource, length_delimited

DELTA_MEMO_BYTES = 64 * 1024 * 1024
SOTW_MEMO_BYTES = 64 * 1024 * 1024
SEEN_LIMIT = 65536  # response keys remembered as met once (no bytes held for them)


class ResponseEncoder:
    """Encodes DiscoveryResponse / DeltaDiscoveryResponse bytes for one server."""

    NONCE_FIELD = 5

    def __init__(self, memo_bytes: int = DELTA_MEMO_BYTES,
                 sotw_memo_bytes: int = SOTW_MEMO_BYTES) -> None:
        self.memo_bytes = memo_bytes
        self._memo: OrderedDict[tuple[object, ...], bytes] = OrderedDict()
        self._held = 0
        self._type_fields: dict[str, bytes] = {}
        self.encoded = 0  # delta bodies actually built (tests)
        self._sotw = _Memo(sotw_memo_bytes)
        self._seen: set[tuple[str, ...]] = set()
        self.joined = 0  # whole responses actually joined (tests, benchmarks)

    def encode(self, type_url: str, version: str, content: TypeContent, nonce: str) -> bytes:
        """The whole response: the same bytes object for every stream sending the same content
        with the same nonce, once it has been met twice (views of their own do not fill the
        memo with responses nobody else sends)."""
        found = self.lookup(type_url, version, content, nonce)
        if found is not None:
            return found
        return self.join(type_url, version, content, nonce,
                         self.parts(type_url, version, content, nonce))

    @property
    def memo_held(self) -> int:
        """Bytes of whole responses kept for other streams."""
        return self._sotw.held

    def lookup(self, type_url: str, version: str, content: TypeContent, nonce: str
               ) -> bytes | None:
        return self._sotw.get((type_url, version, content.key, nonce))

    def join(self, type_url: str, version: str, content: TypeContent, nonce: str,
             parts: list[bytes]) -> bytes:
        """`parts` (from `parts`) in one copy, kept if this response was met before."""
        return self._join_keep((type_url, version, content.key, nonce), parts)

    def lookup_delta(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
                     removed: tuple[str, ...], nonce: str) -> bytes | None:
        """A whole delta response another stream sent (streams number their responses alike
        too: controlplane/protocol/delta.py)."""
        return self._sotw.get(self._delta_key(type_url, version, resources, removed, nonce))

    def join_delta(self, type_url: str, version: str, resources: tuple[CachedResource, ...],
                   removed: tuple[str, ...], nonce: str, parts: list[bytes]) -> bytes:
        """`parts` (from `delta_parts`) in one copy, kept if this response was met before."""
        return self._join_keep(self._delta_key(type_url, version, resources, removed, nonce),
                               parts)

    @staticmethod
    def _delta_key(type_url: str, version: str, resources: tuple[CachedResource, ...],
                   removed: tuple[str, ...], nonce: str) -> tuple[str, ...]:
        return ("delta", type_url, version, *(item.name for item in resources), "\0",
                *removed, "\0", nonce)

    def _join_keep(self, key: tuple[str, ...], parts: list[bytes]) -> bytes:
        body = b"".join(parts)
        self.joined += 1
        if key in self._seen:
            self._sotw.put(key, body)
        else:
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen.add(key)
        return body

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


class _Memo:
    """Bytes by key, least recently used dropped past `limit` bytes; one entry is at most an
    eighth of it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self.held = 0

    def get(self, key: tuple[str, ...]) -> bytes | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: tuple[str, ...], body: bytes) -> None:
        if len(body) > self.limit // 8 or key in self._items:
            return
        self._items[key] = body
        self.held += len(body)
        while self.held > self.limit:
            _, dropped = self._items.popitem(last=False)
            self.held -= len(dropped)
