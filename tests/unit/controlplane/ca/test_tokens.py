"""Join tokens (controlplane/ca/tokens.py): kept hashed, admitted only for the Service they
name, revocation closes the streams that presented them."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from controlplane.ca.tokens import METADATA_KEY, JoinTokens, Refused, TokenBook, digest
from controlplane.store import MemoryStore


def node(service: str) -> base_pb2.Node:
    return base_pb2.Node(id=f"{service}-1", cluster=service)


def tokens() -> tuple[MemoryStore, JoinTokens]:
    store = MemoryStore()
    members = {"beta": ("default", "beta"), "alpha": ("default", "alpha")}
    return store, JoinTokens(TokenBook(store), lambda n: members.get(n.cluster))


async def refusal(admission: JoinTokens, claimed: str, token: str | None) -> str:
    metadata = [(METADATA_KEY, token)] if token is not None else []
    try:
        await admission.admit(node(claimed), metadata)
    except Refused as error:
        return str(error)
    return ""


async def test_the_store_keeps_only_the_hash() -> None:
    store, admission = tokens()
    token, info = await admission.book.create("default", "beta")
    assert list(store.secrets) == [f"token-{digest(token)}"]
    assert token.encode() not in b"".join(store.secrets.values())
    assert info.id == digest(token)[:12]
    assert [item.service for item in await admission.book.list()] == ["beta"]


async def test_a_token_admits_only_its_service() -> None:
    _, admission = tokens()
    token, info = await admission.book.create("default", "beta")
    assert await admission.admit(node("beta"), [(METADATA_KEY, token)]) == info.id
    assert "names default/beta" in await refusal(admission, "alpha", token)
    assert "a join token is required" in await refusal(admission, "beta", None)
    assert "unknown or revoked" in await refusal(admission, "beta", "forged")
    # a node that claims no mesh Service gets no SVID and needs no token
    assert await admission.admit(node("stranger"), []) is None


async def test_revocation_closes_the_streams_and_refuses_the_token() -> None:
    _, admission = tokens()
    token, info = await admission.book.create("default", "beta")
    closed: list[str] = []
    untrack = admission.track(info.id, lambda: closed.append("one"))
    admission.track(info.id, lambda: closed.append("two"))
    untrack()  # that stream ended by itself
    revoked, count = await admission.revoke(info.id[:8])
    assert revoked == info and count == 1 and closed == ["two"]
    assert "unknown or revoked" in await refusal(admission, "beta", token)
    assert await admission.revoke(info.id) == (None, 0)
    assert await admission.revoke("abc") == (None, 0)  # too short to name one
