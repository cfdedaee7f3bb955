"""The join-token calls of the management API (protos/pointsman/identity/v1/identity.proto),
on the same address and behind the same authentication as the mesh calls; no logic here
(controlplane/ca/tokens.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from controlplane.api.handlers import ApiError
from controlplane.ca.tokens import JoinTokens, TokenInfo
from controlplane.mesh.objects import DEFAULT_NAMESPACE
from protos.gen.pointsman.identity.v1 import identity_pb2 as pb

SERVICE = "pointsman.identity.v1.IdentityService"


class IdentityApi:
    def __init__(self, tokens: JoinTokens, guard: Callable[[Any], Any]) -> None:
        self.tokens = tokens
        self.guard = guard  # ApiService._guarded: authentication and ApiError -> status

    def handler(self) -> grpc.GenericRpcHandler:
        calls: dict[str, tuple[Any, Any]] = {
            "CreateToken": (self.create, pb.CreateTokenRequest),
            "RevokeToken": (self.revoke, pb.RevokeTokenRequest),
            "ListTokens": (self.list, pb.ListTokensRequest)}
        methods = {name: grpc.unary_unary_rpc_method_handler(
            self.guard(behaviour), request_deserializer=kind.FromString,
            response_serializer=lambda message: bytes(message.SerializeToString()))
            for name, (behaviour, kind) in calls.items()}
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    async def create(self, request: pb.CreateTokenRequest, _: Any) -> pb.CreateTokenResponse:
        if not request.service:
            raise ApiError("INVALID_ARGUMENT", "a token names a Service: service is required")
        token, info = await self.tokens.book.create(request.namespace or DEFAULT_NAMESPACE,
                                                    request.service)
        return pb.CreateTokenResponse(token=token, info=_info(info))

    async def revoke(self, request: pb.RevokeTokenRequest, _: Any) -> pb.RevokeTokenResponse:
        info, closed = await self.tokens.revoke(request.id)
        if info is None:
            raise ApiError("NOT_FOUND", f"no join token {request.id!r} (give at least 8 "
                                        "characters of an id that `pointsman token list` shows)")
        return pb.RevokeTokenResponse(info=_info(info), closed_streams=closed)

    async def list(self, _request: pb.ListTokensRequest, _: Any) -> pb.ListTokensResponse:
        return pb.ListTokensResponse(tokens=[_info(item) for item in await self.tokens.book.list()])


def _info(info: TokenInfo) -> pb.TokenInfo:
    return pb.TokenInfo(id=info.id, namespace=info.namespace, service=info.service)
