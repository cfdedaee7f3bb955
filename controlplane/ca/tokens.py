"""Join tokens: a sidecar proves which Service it is before it gets that Service's SVID.

`pointsman token create --service S [-n NS]` makes a random token (256 bits, URL-safe) for one
Service; the store keeps only its SHA-256 (`token-<hex>` among the store's secrets, with the
Service it names), so the store leaks no usable token. A sidecar sends its token as gRPC
metadata `x-pointsman-join-token` on its xDS stream (`pointsman sidecar --join-token FILE`;
Envoy: `grpc_services[0].initial_metadata`): metadata, not node metadata, because the node is
echoed in logs, /status and /config_dump, and metadata is what the control plane's
authentication reads before any xDS request (Istio sends its credential the same way).

`JoinTokens` (the DiscoveryServer's admission hook, with `--require-join-token`): a stream
whose node claims a mesh Service must present a token naming that Service, else it ends with
PERMISSION_DENIED before any response; `revoke` deletes the token and closes the streams of
this control plane that presented it (another replica's streams end at their next connection:
each new stream looks the token up in the shared store).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from controlplane.store.base import Store, StoreError

PREFIX = "token-"
METADATA_KEY = "x-pointsman-join-token"
ID_LENGTH = 12


class Refused(Exception):
    """The stream may not be the node it says it is (PERMISSION_DENIED)."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    namespace: str
    service: str

    def __str__(self) -> str:
        return f"{self.id} ({self.namespace}/{self.service})"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """Tokens in the store, by hash."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, namespace: str, service: str) -> tuple[str, TokenInfo]:
        token = secrets.token_urlsafe(32)
        hashed = digest(token)
        value = json.dumps({"namespace": namespace, "service": service}).encode()
        await self.store.create_secret(PREFIX + hashed, value)
        return token, TokenInfo(hashed[:ID_LENGTH], namespace, service)

    async def lookup(self, token: str) -> TokenInfo | None:
        hashed = digest(token)
        found = await self.store.get_secret(PREFIX + hashed)
        return None if found is None else _info(hashed, found)

    async def list(self) -> list[TokenInfo]:
        found = await self.store.list_secrets(PREFIX)
        return sorted((_info(name[len(PREFIX):], value) for name, value in found.items()),
                      key=lambda item: (item.namespace, item.service, item.id))

    async def revoke(self, token_id: str) -> TokenInfo | None:
        """By id (a prefix of the hash, at least 8 hex digits); None when none matches."""
        if len(token_id) < 8:
            return None
        found = await self.store.list_secrets(PREFIX + token_id)
        if len(found) != 1:
            return None
        name, value = next(iter(found.items()))
        await self.store.delete_secret(name)
        return _info(name[len(PREFIX):], value)


def _info(hashed: str, value: bytes) -> TokenInfo:
    try:
        item = json.loads(value)
        return TokenInfo(hashed[:ID_LENGTH], str(item["namespace"]), str(item["service"]))
    except (ValueError, KeyError, TypeError) as error:
        raise StoreError(f"the join token {hashed[:ID_LENGTH]} is corrupt") from error


class JoinTokens:
    """Admission of xDS streams by join token. `identity(node)` is the (namespace, Service)
    the node claims, None for a node that is no mesh Service's (it gets no SVID)."""

    def __init__(self, book: TokenBook,
                 identity: Callable[[Any], tuple[str, str] | None]) -> None:
        self.book = book
        self.identity = identity
        self._streams: dict[str, set[Callable[[], None]]] = {}

    def __repr__(self) -> str:
        return f"JoinTokens({sum(map(len, self._streams.values()))} streams)"

    async def admit(self, node: Any, metadata: Iterable[tuple[str, Any]],
                    _auth_context: Any = None) -> str | None:
        """The id of the token admitting `node` (None: no token needed); Refused says why."""
        claimed = self.identity(node)
        if claimed is None:
            return None
        who = "/".join(claimed)
        token = next((str(value) for key, value in metadata if key == METADATA_KEY), "")
        if not token:
            raise Refused(f"node {node.id!r} claims Service {who}: a join token is required "
                          f"(gRPC metadata {METADATA_KEY})")
        info = await self.book.lookup(token)
        if info is None:
            raise Refused(f"node {node.id!r}: unknown or revoked join token")
        if (info.namespace, info.service) != claimed:
            raise Refused(f"node {node.id!r} claims Service {who} but its join token names "
                          f"{info.namespace}/{info.service}")
        return info.id

    def track(self, token_id: str, close: Callable[[], None]) -> Callable[[], None]:
        """Close the stream (`close`) when its token is revoked; returns the untrack call."""
        self._streams.setdefault(token_id, set()).add(close)
        return lambda: self._streams.get(token_id, set()).discard(close)

    async def revoke(self, token_id: str) -> tuple[TokenInfo | None, int]:
        info = await self.book.revoke(token_id)
        if info is None:
            return None, 0
        closing = self._streams.pop(info.id, set())
        for close in closing:
            close()
        return info, len(closing)
