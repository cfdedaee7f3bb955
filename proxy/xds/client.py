"""The ADS client's I/O: one grpcio aio bidi stream, driven by proxy.xds.protocol (state of
the world, StreamAggregatedResources) or proxy.xds.delta (incremental, DeltaAggregatedResources).

Connects to the bootstrap's ADS cluster, sends the subscriptions, and for each response asks
the applier (proxy.server) to apply the resources (the whole set, or the delta): success ->
ACK, ConfigError -> NACK with the error naming resource and field (the last good config
stays). After each applied update it
re-reads which RDS / EDS names the config needs and changes the subscriptions. When a stream
fails or ends it opens a new one after a jittered exponential backoff (proxy.xds.backoff:
Envoy's, from the bootstrap's retry_back_off or 500 ms / 30 s), reset by each response, and
resumes with the versions it holds. With several endpoints in the ADS cluster (several
control planes), each new stream goes to the next one in turn, as Envoy's ADS cluster picks a
host per stream with its round-robin load balancer: a dead control plane's sidecars reach
another at their next attempt.

Health reports (`report_health`, from the readiness probe, proxy/readiness) go on the same
stream: the stream's one loop waits for a response or a report, whichever comes first, and
does every write, so a report never waits for a response nor interleaves with an ACK; each new
stream sends the last report again after its subscriptions (a control plane forgets a
stream's health when it ends).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from protos.errors import ConfigError
from protos.registry import CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION, SECRET
from proxy.stats import Stats
from proxy.xds.backoff import BackoffSettings, JitteredBackoff
from proxy.xds.delta import DeltaApplier
from proxy.xds.protocol import SotwApplier
from proxy.xds.resource_types import RESOURCE_TYPES, short_name

log = logging.getLogger(__name__)

NAMED_TYPES = (CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION, SECRET)  # subscribed by name


def _stat_scope(type_url: str) -> str:
    known = RESOURCE_TYPES.get(type_url)
    return known.stat_scope if known is not None else "xds."


class XdsApplier(SotwApplier, DeltaApplier, Protocol):
    def wanted_names(self, type_url: str) -> Iterable[str]:
        """RDS / EDS resource names the current config refers to."""


class Received(Protocol):
    """A response to apply: proxy.xds.protocol.ResourcesReceived or delta.DeltaReceived."""

    @property
    def type_url(self) -> str: ...

    @property
    def version(self) -> str: ...

    def apply_to(self, applier: Any) -> None: ...


class XdsProtocol(Protocol):
    """The sans-I/O subscription state: proxy.xds.protocol.AdsProtocol (SotW) or
    proxy.xds.delta.DeltaProtocol; requests and responses are the matching protobufs."""

    method: str

    def stream_started(self) -> list[Any]: ...

    def received(self, response: Any) -> Received | None: ...

    def accept(self, received: Any) -> Any: ...

    def reject(self, received: Any, error: str) -> Any: ...

    def set_names(self, type_url: str, names: Iterable[str]) -> Any | None: ...

    def health_report(self, healthy: bool, message: str = "") -> Any: ...


Credentials = Any  # grpc.ChannelCredentials, a callable returning them, or None (plaintext)


class AdsClient:
    def __init__(self, target: str, protocol: XdsProtocol, applier: XdsApplier, stats: Stats,
                 *, credentials: Credentials = None,
                 options: tuple[tuple[str, Any], ...] = (),
                 backoff: JitteredBackoff | None = None,
                 targets: tuple[str, ...] = (),
                 named_types: tuple[str, ...] = NAMED_TYPES,
                 stub: Any = None, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.metadata = metadata  # sent with each stream (GrpcService.initial_metadata)
        self.target = target
        self.named_types = named_types
        # the service the stream belongs to: ADS, or SecretDiscoveryService for an SDS
        # api_config_source (proxy.xds.sds)
        self.stub = stub or ads_pb2_grpc.AggregatedDiscoveryServiceStub
        self.targets = targets or (target,)
        self._next_target = 0
        self.options = options
        self.protocol = protocol
        self.applier = applier
        self.stats = stats
        self.credentials = credentials
        self.connected = stats.gauge("control_plane.connected_state")
        self.backoff = backoff or JitteredBackoff(BackoffSettings(), random.Random())
        self.health: tuple[bool, str] | None = None  # the last report: sent on each stream
        self._health_due = False
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"AdsClient({self.target}, connected={self.connected.value})"

    async def run(self) -> None:
        """Keep one stream up until cancelled."""
        while True:
            try:
                await self._one_stream()
            except grpc.aio.AioRpcError as error:
                log.warning("ADS stream to %s: %s %s", self.target, error.code().name,
                            error.details() or "")
            except Exception:
                log.exception("ADS stream to %s failed", self.target)
            finally:
                self.connected.set(0)
            await asyncio.sleep(self.backoff.next_delay())

    def next_target(self) -> str:
        """The control plane a new stream goes to: each in turn."""
        target = self.targets[self._next_target % len(self.targets)]
        self._next_target += 1
        return target

    async def _one_stream(self) -> None:
        self.target = self.next_target()
        # a callable is asked again for each new stream (a renewed client certificate)
        credentials = self.credentials() if callable(self.credentials) else self.credentials
        channel = (grpc.aio.secure_channel(self.target, credentials, options=self.options)
                   if credentials else grpc.aio.insecure_channel(self.target))
        try:
            stub = self.stub(channel)
            call = getattr(stub, self.protocol.method)(metadata=self.metadata or None)
            self._refresh_interest()
            for request in self.protocol.stream_started():
                await call.write(request)
            self._health_due = self.health is not None  # again: the server forgot it
            await self._exchange(call)
        finally:
            if self.connected.value:
                log.info("disconnected from the control plane at %s", self.target)
            await channel.close()

    def report_health(self, healthy: bool, message: str = "") -> None:
        """The application is ready or not: sent on the stream now (or on the next one)."""
        self.health = (healthy, message)
        self._health_due = True
        self._wake.set()

    async def _exchange(self, call: Any) -> None:
        """Until the stream ends: answer each response, and send a health report when one is
        due without waiting for a response (this loop owns every write of the stream)."""
        reading: asyncio.Future[Any] = asyncio.ensure_future(call.read())
        waking: asyncio.Future[Any] | None = None
        try:
            while True:
                if self._health_due and self.health is not None:
                    self._health_due = False
                    await call.write(self.protocol.health_report(*self.health))
                if not reading.done():
                    self._wake.clear()
                    waking = asyncio.ensure_future(self._wake.wait())
                    await asyncio.wait((reading, waking), return_when=asyncio.FIRST_COMPLETED)
                    waking.cancel()
                if not reading.done():
                    continue
                response = reading.result()
                if response is grpc.aio.EOF:
                    return
                self._received()
                for request in self.handle(response):
                    await call.write(request)
                reading = asyncio.ensure_future(call.read())
        finally:
            if waking is not None:
                waking.cancel()
            if reading.done() and not reading.cancelled():
                reading.exception()  # retrieved: raised above, or moot once a write failed
            reading.cancel()

    def _received(self) -> None:
        self.backoff.reset()  # Envoy: GrpcStream::onReceiveMessage
        if not self.connected.value:
            log.info("connected to the control plane at %s (%s)", self.target,
                     self.protocol.method)
            self.connected.set(1)

    def handle(self, response: Any) -> list[Any]:
        """Apply one response; the requests to send (ACK or NACK, then interest changes)."""
        received = self.protocol.received(response)
        if received is None:
            return []
        requests = [self._apply(received)]
        for type_url in self.named_types:
            request = self.protocol.set_names(type_url, self.applier.wanted_names(type_url))
            if request is not None:
                requests.append(request)
        return requests

    def _apply(self, received: Received) -> Any:
        scope = _stat_scope(received.type_url)
        self.stats.counter(scope + "update_attempt").inc()
        try:
            received.apply_to(self.applier)
        except ConfigError as error:
            self.stats.counter(scope + "update_rejected").inc()
            log.warning("NACK %s version %r: %s", short_name(received.type_url),
                        received.version, error)
            return self.protocol.reject(received, str(error))
        except Exception as error:  # a bug must not end the subscription: NACK and go on
            self.stats.counter(scope + "update_rejected").inc()
            log.exception("NACK %s version %r: internal error",
                          short_name(received.type_url), received.version)
            return self.protocol.reject(received, f"internal error: {error!r}")
        self.stats.counter(scope + "update_success").inc()
        log.debug("ACK %s version %r", short_name(received.type_url), received.version)
        return self.protocol.accept(received)

    def _refresh_interest(self) -> None:
        for type_url in self.named_types:
            self.protocol.set_names(type_url, self.applier.wanted_names(type_url))
