"""The servicers: ADS and the per-type discovery services, state-of-the-world and delta
(incremental), described once (`methods`) and registered with the native transport
(controlplane/transport/h2_server.py, whose calls offer the part of grpcio's ServicerContext
used here) or with grpcio aio (`generic_handlers`). No protocol logic here.

Each stream runs one loop: a reader task turns incoming DiscoveryRequests into inbox items;
once the stream's node is known, the cache wakes it when that node's view changes
(`ResourceCache.subscribe`), through the pacer's debounce, as a coalesced "snapshot changed"
item; the loop feeds them to a sans-I/O `SotwStream` / `DeltaStream` and writes the Push
actions, each within the pacer's budget of bytes in flight (controlplane/fanout.py). Responses
are pre-encoded bytes (controlplane/cache/encoder.py), so the RPCs are registered with an
identity response serialiser.

With an `admission` hook (controlplane/ca/admission.py: the client certificate's identity over
mTLS, else join tokens) a stream's node is checked once it is known, before any response: a
refused node ends the stream with PERMISSION_DENIED, and a stream whose token is revoked later
ends the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from controlplane import logs
from controlplane.cache import ResourceCache, ResponseEncoder
from controlplane.fanout import Pacer
from controlplane.logs import now
from controlplane.observe import Observer
from controlplane.protocol.delta import DeltaStream
from controlplane.protocol.events import DeltaPush, ProtocolError, Push
from controlplane.protocol.requests import RequestParser
from controlplane.protocol.sotw import SotwStream
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from controlplane.transport.h2_server import Method, grpcio_handlers

# service -> (its type, or "" for ADS which serves them all; its method prefix). Methods are
# Stream<X> (SotW), Delta<X> (incremental) and Fetch<X> (unary; not on ADS).
SERVICES: dict[str, tuple[str, str]] = {
    "envoy.service.discovery.v3.AggregatedDiscoveryService": ("", "AggregatedResources"),
    "envoy.service.cluster.v3.ClusterDiscoveryService": (CLUSTER.type_url, "Clusters"),
    "envoy.service.endpoint.v3.EndpointDiscoveryService": (ENDPOINT.type_url, "Endpoints"),
    "envoy.service.listener.v3.ListenerDiscoveryService": (LISTENER.type_url, "Listeners"),
    "envoy.service.route.v3.RouteDiscoveryService": (ROUTE.type_url, "Routes"),
    "envoy.service.secret.v3.SecretDiscoveryService": (SECRET.type_url, "Secrets"),
}
XdsStream = SotwStream | DeltaStream

_SNAPSHOT_CHANGED = object()
_END = object()
_REVOKED = object()


class DiscoveryServer:
    """Serves SotW and delta xDS from `cache`; reports every action to `observer`."""

    def __init__(self, cache: ResourceCache, observer: Observer,
                 pacer: Pacer | None = None, *, partial_updates: bool = True,
                 admission: Any = None) -> None:
        self.cache = cache
        self.admission = admission  # XdsAdmission, or None: every node is believed
        self.observer = observer
        self.partial_updates = partial_updates  # SotW EDS/RDS/SDS changes: only what changed
        self.encoder = ResponseEncoder()
        self.pacer = pacer or Pacer()
        # Identical requests (ACKs, EDS/RDS subscriptions of a mesh) parsed once for all streams.
        self.requests = RequestParser(discovery_pb2.DiscoveryRequest)
        self.delta_requests = RequestParser(discovery_pb2.DeltaDiscoveryRequest)

    def methods(self) -> dict[str, Method]:
        """Every method by path (`/package.Service/Method`), for either transport."""
        methods: dict[str, Method] = {}
        for service, (type_url, suffix) in SERVICES.items():
            short = service.rsplit(".", 1)[-1]
            methods[f"/{service}/Stream{suffix}"] = Method(
                self._stream_behaviour(SotwStream, short, type_url), self.requests.parse, True)
            methods[f"/{service}/Delta{suffix}"] = Method(
                self._stream_behaviour(DeltaStream, f"{short}(delta)", type_url),
                self.delta_requests.parse, True)
            if type_url:
                methods[f"/{service}/Fetch{suffix}"] = Method(
                    self._fetch_behaviour(type_url), discovery_pb2.DiscoveryRequest.FromString,
                    False)
        return methods

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        return grpcio_handlers(self.methods())

    def encode(self, action: Push | DeltaPush) -> bytes:
        found = self._shared_body(action)
        return found if found is not None else self._join(action, self.parts(action))

    def parts(self, action: Push | DeltaPush) -> list[bytes]:
        if isinstance(action, DeltaPush):
            return self.encoder.delta_parts(action.type_url, action.version, action.resources,
                                            action.removed, action.nonce)
        return self.encoder.parts(action.type_url, action.version, action.resources,
                                  action.nonce)

    async def write(self, context: grpc.aio.ServicerContext, action: Push | DeltaPush) -> None:
        """Encode and write one response within the pacer's budget of bytes in flight (the
        bytes may be shared with other streams: controlplane/cache/encoder.py; grpcio copies
        them for each call all the same, so each write counts). The native transport takes
        the response's pieces as they are: nothing is joined for it."""
        ready = getattr(context, "ready_to_write", None)
        if ready is not None:  # the native transport: a stalled peer waits here, holding no budget
            await ready()
        body = self._shared_body(action)
        parts = self.parts(action) if body is None else []
        size = len(body) if body is not None else sum(len(part) for part in parts)
        await self.pacer.acquire(size)  # before the copy below: the budget bounds the copies
        try:
            write_parts = getattr(context, "write_parts", None)
            if body is None and write_parts is not None:
                await write_parts(parts)  # the native transport: the pieces, joined by nobody
            else:
                await context.write(body if body is not None  # type: ignore[arg-type]
                                    else self._join(action, parts))
        finally:
            self.pacer.release(size)

    def _shared_body(self, action: Push | DeltaPush) -> bytes | None:
        """A response another stream already sent (cache/encoder.py)."""
        if isinstance(action, DeltaPush):
            return self.encoder.lookup_delta(action.type_url, action.version, action.resources,
                                             action.removed, action.nonce)
        return self.encoder.lookup(action.type_url, action.version, action.resources,
                                   action.nonce)

    def _join(self, action: Push | DeltaPush, parts: list[bytes]) -> bytes:
        if isinstance(action, DeltaPush):
            return self.encoder.join_delta(action.type_url, action.version, action.resources,
                                           action.removed, action.nonce, parts)
        return self.encoder.join(action.type_url, action.version, action.resources,
                                 action.nonce, parts)

    def _fetch_behaviour(self, type_url: str
                         ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def fetch(request: discovery_pb2.DiscoveryRequest,
                        context: grpc.aio.ServicerContext) -> bytes:
            """One request, one answer (xds_protocol.rst, "REST-JSON polling" semantics over
            gRPC): the current resources, an empty set when none of the names exist."""
            stream = SotwStream(self.cache.snapshot_for, allowed_types=(type_url,),
                                default_type=type_url)
            if self.admission is not None:
                refusal = await self._refusal(request.node, context)
                if refusal is not None:
                    await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
            try:
                actions = stream.receive(request, now())
            except ProtocolError as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            for action in actions:
                if isinstance(action, Push):
                    return self.encode(action)
            typed = stream.resolve_snapshot().of_type(type_url)
            return discovery_pb2.DiscoveryResponse(version_info=typed.version,
                                                   type_url=type_url).SerializeToString()
        return fetch

    def _stream_behaviour(self, kind: type[XdsStream], service: str, type_url: str
                          ) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]:
        allowed = (type_url,) if type_url else None

        async def behaviour(_requests: Any, context: grpc.aio.ServicerContext) -> None:
            stream: XdsStream
            if kind is SotwStream:
                stream = SotwStream(self.cache.snapshot_for, allowed_types=allowed,
                                    default_type=type_url, partial_updates=self.partial_updates)
            else:
                stream = DeltaStream(self.cache.snapshot_for, allowed_types=allowed,
                                     default_type=type_url)
            await self.serve_stream(stream, context, service)
        return behaviour

    async def serve_stream(self, stream: XdsStream, context: grpc.aio.ServicerContext,
                           service: str) -> None:
        inbox: asyncio.Queue[object] = asyncio.Queue()
        change_pending = False

        def on_change() -> None:
            nonlocal change_pending
            if not change_pending:
                change_pending = True
                inbox.put_nowait(_SNAPSHOT_CHANGED)

        def changed() -> None:
            self.pacer.changed(on_change)  # held while a burst of changes goes on

        stream_id = self.observer.opened(stream, service, context.peer())
        cancel_watch: Callable[[], None] | None = None
        untrack: Callable[[], None] | None = None
        admitted = self.admission is None
        try:
            async with asyncio.TaskGroup() as tasks:
                reader = tasks.create_task(self._read_requests(context, inbox))
                while (item := await inbox.get()) is not _END:
                    if item is _REVOKED:
                        reader.cancel()
                        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                            "the join token of this stream was revoked")
                    if item is _SNAPSHOT_CHANGED:
                        change_pending = False
                        actions = stream.snapshot_changed(now())
                    else:
                        if not admitted:
                            refusal, untrack = await self._admit(item, context, inbox)
                            if refusal is not None:
                                reader.cancel()
                                await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
                            admitted = True
                        try:
                            actions = stream.receive(item, now())  # type: ignore[arg-type]
                        except ProtocolError as error:
                            reader.cancel()
                            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                    if cancel_watch is None and stream.node is not None:
                        # Woken only when the view this node sees changes (cache/store.py).
                        cancel_watch = self.cache.subscribe(stream.node, changed)
                    self.observer.record(stream_id, actions)
                    for action in actions:
                        if isinstance(action, Push | DeltaPush):
                            await self.write(context, action)
        finally:
            self.pacer.forget(on_change)
            if cancel_watch is not None:
                cancel_watch()
            if untrack is not None:
                untrack()
            self.observer.closed(stream_id)

    async def _admit(self, request: Any, context: grpc.aio.ServicerContext,
                     inbox: asyncio.Queue[object]
                     ) -> tuple[str | None, Callable[[], None] | None]:
        """The first request's node through the admission hook: (refusal, untrack)."""
        refusal, token_id = await self._check(request.node, context)
        if refusal is not None or token_id is None:
            return refusal, None
        return None, self.admission.track(token_id, lambda: inbox.put_nowait(_REVOKED))

    async def _refusal(self, node: Any, context: grpc.aio.ServicerContext) -> str | None:
        return (await self._check(node, context))[0]

    async def _check(self, node: Any, context: grpc.aio.ServicerContext
                     ) -> tuple[str | None, str | None]:
        """(refusal, the admitting token's id)."""
        from controlplane.ca.tokens import Refused

        try:
            token_id = await self.admission.admit(node, context.invocation_metadata() or (),
                                                  context.auth_context())
        except Refused as error:
            logs.event("node_refused", logging.WARNING, node=node.id, error=str(error))
            return str(error), None
        return None, token_id

    @staticmethod
    async def _read_requests(context: grpc.aio.ServicerContext,
                             inbox: asyncio.Queue[object]) -> None:
        try:
            while (request := await context.read()) is not grpc.aio.EOF:
                inbox.put_nowait(request)
        finally:
            inbox.put_nowait(_END)
