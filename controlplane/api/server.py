"""The management API's gRPC adapter: requests in, MeshApi calls, responses out; no logic.

Served on its own address (`pointsman controlplane --api`, 127.0.0.1:18001 by default).
Off loopback it needs mutual TLS (`--client-ca`) or a bearer token (`--api-token-file`; the
`authorization: Bearer TOKEN` metadata, compared in constant time), and a token over plain
TCP needs `--allow-plaintext` as well. Refusals carry google.rpc.Status details (the
`grpc-status-details-bin` trailer) holding the problems, each naming file, line, object and
field (protos/pointsman/mesh/v1/mesh.proto).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
from google.protobuf import any_pb2
from google.rpc import status_pb2

from controlplane.api import wire
from controlplane.api.describe import describe_service, mtls_summary
from controlplane.api.handlers import ApiError, MeshApi
from controlplane.api.mirror import DELETED, ObjectEvent, StoreMirror
from controlplane.api.proxies import ControlPlaneInfo, ProxyRecord
from controlplane.api.status import StatusView
from controlplane.mesh import ObjectKey
from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb

SERVICE = "pointsman.mesh.v1.MeshService"
MAX_MESSAGE = 32 * 1024 * 1024  # one request; past it gRPC answers RESOURCE_EXHAUSTED
OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE),
           ("grpc.max_send_message_length", 256 * 1024 * 1024),
           ("grpc.so_reuseport", 0))
log = logging.getLogger("pointsman.controlplane.api")

Unary = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class Directory(Protocol):
    """Every connected proxy and control plane (one replica's, or all replicas')."""

    def records(self) -> list[ProxyRecord]: ...

    def control_planes(self) -> list[ControlPlaneInfo]: ...


class ApiService:
    def __init__(self, api: MeshApi, mirror: StoreMirror, status: StatusView,
                 proxies: Directory, *, token: str | None = None) -> None:
        self.api = api
        self.mirror = mirror
        self.status = status
        self.proxies = proxies
        self.token = token

    def handler(self) -> grpc.GenericRpcHandler:
        unary: dict[str, tuple[Unary, Any]] = {
            "Apply": (self.apply, pb.ApplyRequest), "Delete": (self.delete, pb.DeleteRequest),
            "Get": (self.get, pb.GetRequest), "List": (self.list, pb.ListRequest),
            "ProxyStatus": (self.proxy_status, pb.ProxyStatusRequest),
            "DescribeService": (self.describe_service, pb.DescribeServiceRequest)}
        methods = {name: grpc.unary_unary_rpc_method_handler(
            self._guarded(behaviour), request_deserializer=kind.FromString,
            response_serializer=_serialise) for name, (behaviour, kind) in unary.items()}
        methods["Watch"] = grpc.unary_stream_rpc_method_handler(
            self._guarded_stream(self.watch), request_deserializer=pb.WatchRequest.FromString,
            response_serializer=_serialise)
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    # ---- calls ------------------------------------------------------------------------------

    async def apply(self, request: pb.ApplyRequest, _: grpc.aio.ServicerContext
                    ) -> pb.ApplyResponse:
        result = await self.api.apply(_sources(request.documents), dry_run=request.dry_run,
                                      strict=request.strict)
        return pb.ApplyResponse(revision=result.revision,
                                outcomes=[wire.outcome(item) for item in result.outcomes],
                                warnings=[wire.problem(item) for item in result.warnings])

    async def delete(self, request: pb.DeleteRequest, _: grpc.aio.ServicerContext
                     ) -> pb.DeleteResponse:
        refs = [ObjectKey(self.api.kind(item.kind), item.namespace or "default", item.name)
                for item in request.objects]
        result = await self.api.delete(_sources(request.documents), refs,
                                       ignore_not_found=request.ignore_not_found,
                                       dry_run=request.dry_run)
        return pb.DeleteResponse(revision=result.revision,
                                 outcomes=[wire.outcome(item) for item in result.outcomes])

    async def get(self, request: pb.GetRequest, _: grpc.aio.ServicerContext) -> pb.Object:
        ref = request.object
        record, obj = self.api.get(ref.kind, ref.namespace, ref.name)
        return wire.object_message(record, self._status(record.key, obj))

    async def list(self, request: pb.ListRequest, _: grpc.aio.ServicerContext
                   ) -> pb.ListResponse:
        records = self.api.list(request.kind, request.namespace)
        objects = self.mirror.state.objects
        return pb.ListResponse(revision=self.mirror.revision, objects=[
            wire.object_message(record, self._status(record.key, objects.get(record.key)))
            for record in records])

    async def proxy_status(self, request: pb.ProxyStatusRequest, _: grpc.aio.ServicerContext
                           ) -> pb.ProxyStatusResponse:
        wanted = request.node
        records = [record for record in self.proxies.records()
                   if not wanted or wanted in (record.node_id, record.name,
                                               f"{record.namespace}/{record.name}")]
        if wanted and not records:
            raise ApiError("NOT_FOUND", f"no connected proxy is {wanted!r} (a node id, or a "
                                        "Service as NAME or NAMESPACE/NAME)")
        return pb.ProxyStatusResponse(
            control_planes=[wire.control_plane(item) for item in self.proxies.control_planes()],
            proxies=[self._with_identity(wire.proxy_status(record)) for record in records])

    def _with_identity(self, found: pb.ProxyStatus) -> pb.ProxyStatus:
        """Its SPIFFE ID and its Service's inbound mTLS modes (controlplane/mesh/security.py)."""
        identity = self.status.cache.compiler.identity
        if identity is None or not found.kind:
            return found
        found.identity = identity.spiffe_id(found.namespace, found.name)
        secrets = self.status.cache.identity_secrets
        svid = secrets.svid((found.namespace, found.name)) if secrets is not None else None
        if svid is not None:
            found.certificate_not_after.FromDatetime(svid.not_after)
            found.certificate_renew_at.FromDatetime(svid.renew_at)
        service = self.status.cache.mesh.service(found.namespace, found.name)
        if found.kind == "Service" and service is not None:
            found.mtls = mtls_summary(self.status.cache.mesh, service, identity)
        return found

    async def describe_service(self, request: pb.DescribeServiceRequest,
                               _: grpc.aio.ServicerContext) -> pb.ServiceDescription:
        self.api.get("Service", request.namespace, request.name)  # NOT_FOUND
        key = ObjectKey("Service", request.namespace or "default", request.name)
        return describe_service(key, self.mirror, self.status.cache, self.status)

    async def watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext
                    ) -> AsyncIterator[pb.WatchEvent]:
        kind = self.api.kind(request.kind) if request.kind else ""

        def wanted(key: ObjectKey) -> bool:
            return (not kind or key.kind == kind) and (
                not request.namespace or key.namespace == request.namespace)
        queue = self.mirror.subscribe()
        try:
            start = self.mirror.revision
            if request.resource_version:
                replay = self.mirror.events_after(request.resource_version)
                if replay is None:
                    raise ApiError("OUT_OF_RANGE", f"resource_version "
                                   f"{request.resource_version} is too old: list again")
                for event in replay:
                    if wanted(event.record.key):
                        yield self._event(event)
            else:
                for record in self.api.list():
                    if wanted(record.key):
                        yield self._event(ObjectEvent("ADDED", record, start))
            while True:
                event = await queue.get()
                if event.revision > start and wanted(event.record.key):
                    yield self._event(event)
        finally:
            self.mirror.unsubscribe(queue)

    # ---- helpers ----------------------------------------------------------------------------

    def _status(self, key: ObjectKey, obj: Any) -> dict[str, Any]:
        record = self.mirror.state.records.get(key)
        return self.status.of(key, obj, self.mirror.errors.get(key, ""),
                              record.revision if record is not None else 0)

    def _event(self, event: ObjectEvent) -> pb.WatchEvent:
        key = event.record.key
        status = None if event.type == DELETED else self._status(
            key, self.mirror.state.objects.get(key))
        return pb.WatchEvent(type=event.type,  # type: ignore[arg-type]
                             object=wire.object_message(event.record, status),
                             revision=event.revision)

    def _allowed(self, context: grpc.aio.ServicerContext) -> bool:
        if self.token is None:
            return True
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                return hmac.compare_digest(value.encode(), f"Bearer {self.token}".encode())
        return False

    def _guarded(self, behaviour: Unary) -> Unary:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if not self._allowed(context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token "
                                    "is required (authorization: Bearer TOKEN)")
            try:
                return await behaviour(request, context)
            except ApiError as error:
                await _abort(context, error)
        return call

    def _guarded_stream(self, behaviour: Callable[..., AsyncIterator[Any]]
                        ) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if not self._allowed(context):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid bearer token "
                                    "is required (authorization: Bearer TOKEN)")
            try:
                async for item in behaviour(request, context):
                    yield item
            except ApiError as error:
                await _abort(context, error)
        return call


def _sources(documents: Any) -> list[tuple[str, bytes]]:
    return [(item.source, item.content) for item in documents]


def _serialise(message: Any) -> bytes:
    return bytes(message.SerializeToString())


async def _abort(context: grpc.aio.ServicerContext, error: ApiError) -> None:
    code = getattr(grpc.StatusCode, error.code)
    details = any_pb2.Any()
    details.Pack(wire.problems(error.problems))
    rich = status_pb2.Status(code=code.value[0], message=str(error), details=[details])
    await context.abort(code, str(error), trailing_metadata=(
        ("grpc-status-details-bin", rich.SerializeToString()),))


class ApiServer:
    """The grpc.aio server of the management API."""

    def __init__(self, service: ApiService,
                 credentials: grpc.ServerCredentials | None = None,
                 extra: tuple[grpc.GenericRpcHandler, ...] = ()) -> None:
        self.server = grpc.aio.server(options=OPTIONS)
        self.server.add_generic_rpc_handlers([service.handler(), *extra])
        self.credentials = credentials

    def bind(self, host: str, port: int) -> int:
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self.credentials is not None:
            return int(self.server.add_secure_port(target, self.credentials))
        return int(self.server.add_insecure_port(target))

    async def start(self) -> None:
        await self.server.start()

    async def close(self) -> None:
        await self.server.stop(grace=1.0)
        await asyncio.sleep(0)
