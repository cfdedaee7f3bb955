"""The ADS client's I/O: one grpcio aio bidi stream, driven by proxy.xds.protocol.

Connects to the bootstrap's ADS cluster, sends the subscriptions, and for each response asks
the applier (proxy.server) to apply the resources: success -> ACK, ConfigError -> NACK with
the error naming resource and field (the last good config stays). After each applied update it
re-reads which RDS / EDS names the config needs and changes the subscriptions. When a stream
fails or ends it opens a new one after a jittered exponential backoff (proxy.xds.backoff:
Envoy's, from the bootstrap's retry_back_off or 500 ms / 30 s), reset by each response, and
resumes with the versions it holds. With several endpoints in the ADS cluster (several
control planes), each new stream goes to the next one in turn, as Envoy's ADS cluster picks a
host per stream with its round-robin load balancer: a dead control plane's sidecars reach
another at their next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from protos.errors import ConfigError
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from proxy.stats import Stats
from proxy.xds.backoff import BackoffSettings, JitteredBackoff
from proxy.xds.protocol import AdsProtocol, ResourcesReceived

log = logging.getLogger(__name__)

# Envoy's stat scopes for config updates (docs: config/cluster_manager/cluster_stats,
# configuration/listeners/lds).
_STAT_SCOPES = {CLUSTER: "cluster_manager.cds.", LISTENER: "listener_manager.lds.",
                ROUTE_CONFIGURATION: "rds.", CLUSTER_LOAD_ASSIGNMENT: "eds."}


class XdsApplier(Protocol):
    def apply(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        """Apply the full state-of-the-world set for `type_url`; raise ConfigError to NACK."""

    def wanted_names(self, type_url: str) -> Iterable[str]:
        """RDS / EDS resource names the current config refers to."""


class AdsClient:
    def __init__(self, target: str, protocol: AdsProtocol, applier: XdsApplier, stats: Stats,
                 *, credentials: grpc.ChannelCredentials | None = None,
                 options: tuple[tuple[str, Any], ...] = (),
                 backoff: JitteredBackoff | None = None,
                 targets: tuple[str, ...] = ()) -> None:
        self.target = target
        self.targets = targets or (target,)
        self._next_target = 0
        self.options = options
        self.protocol = protocol
        self.applier = applier
        self.stats = stats
        self.credentials = credentials
        self.connected = stats.gauge("control_plane.connected_state")
        self.backoff = backoff or JitteredBackoff(BackoffSettings(), random.Random())

    def __repr__(self) -> str:
        return f"AdsClient({self.target}, connected={self.connected.value})"

    async def run(self) -> None:
        """Keep one stream up until cancelled."""
        while True:
            try:
                await self._one_stream()
            except grpc.aio.AioRpcError as error:
                log.warning("ADS stream to %s: %s", self.target, error.code().name)
            except Exception:
                log.exception("ADS stream to %s failed", self.target)
            finally:
                self.connected.set(0)
            await asyncio.sleep(self.backoff.next_delay())

    async def _one_stream(self) -> None:
        self.target = self.targets[self._next_target % len(self.targets)]
        self._next_target += 1
        channel = (grpc.aio.secure_channel(self.target, self.credentials, options=self.options)
                   if self.credentials else grpc.aio.insecure_channel(self.target))
        try:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = stub.StreamAggregatedResources()
            self._refresh_interest()
            for request in self.protocol.stream_started():
                await call.write(request)
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return
                self.backoff.reset()  # Envoy: GrpcStream::onReceiveMessage
                self.connected.set(1)
                for request in self.handle(response):
                    await call.write(request)
        finally:
            await channel.close()

    def handle(self, response: discovery_pb2.DiscoveryResponse
               ) -> list[discovery_pb2.DiscoveryRequest]:
        """Apply one response; the requests to send (ACK or NACK, then interest changes)."""
        received = self.protocol.received(response)
        if received is None:
            return []
        requests = [self._apply(received)]
        for type_url in (CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION):
            request = self.protocol.set_names(type_url, self.applier.wanted_names(type_url))
            if request is not None:
                requests.append(request)
        return requests

    def _apply(self, received: ResourcesReceived) -> discovery_pb2.DiscoveryRequest:
        scope = _STAT_SCOPES.get(received.type_url, "xds.")
        self.stats.counter(scope + "update_attempt").inc()
        try:
            self.applier.apply(received.type_url, received.version, received.resources)
        except ConfigError as error:
            self.stats.counter(scope + "update_rejected").inc()
            log.warning("NACK %s version %r: %s", received.type_url, received.version, error)
            return self.protocol.reject(received, str(error))
        except Exception as error:  # a bug must not end the subscription: NACK and go on
            self.stats.counter(scope + "update_rejected").inc()
            log.exception("NACK %s version %r: internal error", received.type_url,
                          received.version)
            return self.protocol.reject(received, f"internal error: {error!r}")
        self.stats.counter(scope + "update_success").inc()
        return self.protocol.accept(received)

    def _refresh_interest(self) -> None:
        for type_url in (CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION):
            self.protocol.set_names(type_url, self.applier.wanted_names(type_url))
