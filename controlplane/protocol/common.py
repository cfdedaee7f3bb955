"""What every xDS stream does with a request first, SotW or delta alike."""

from __future__ import annotations

from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2

from controlplane.protocol.events import Action, NodeIdentified, ProtocolError


class _Stream(Protocol):
    node: base_pb2.Node | None
    allowed_types: frozenset[str]
    default_type: str


def identify(stream: _Stream, request: Any) -> tuple[list[Action], str]:
    """Take the node from the stream's first request (xDS protocol: only the first request is
    guaranteed to carry it) and resolve the request's type URL (the per-type services may leave
    it empty), refusing a type the stream does not serve. Returns (actions, type_url)."""
    actions: list[Action] = []
    if stream.node is None:
        stream.node = base_pb2.Node()
        stream.node.CopyFrom(request.node)
        actions.append(NodeIdentified(stream.node))
    type_url = request.type_url or stream.default_type
    if type_url not in stream.allowed_types:
        raise ProtocolError(f"type_url {type_url!r} is not served on this stream")
    return actions, type_url
