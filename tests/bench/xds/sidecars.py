"""Simulated sidecars for the control-plane benchmark (a script helper, not a test).

Each simulated sidecar has its own channel and its own TCP connection
(`grpc.use_local_subchannel_pool`: without it grpcio shares one connection among channels with
the same target and arguments) and subscribes as Envoy does over ADS: CDS (wildcard), then EDS
for the clusters' EDS service names, then LDS (wildcard), then RDS for the route configuration
names of the listeners, ACKing every response (with the subscribed names for EDS and RDS).
A stream that fails is counted by its status code and reopened after Envoy's default backoff
(jittered, 0.5 s doubling to 30 s).

It records when it holds every type for the first time (converged) and when each EDS version
arrived, so the driver can time a change per sidecar. The generator's own CPU is reported and
shares the machine with the server, so it is kept small: responses are parsed by protobuf's upb
backend with no Python object per resource (tests/bench/xds/wire.py), and the names
resources refer to (a cluster's EDS service name, a listener's RDS route name) are read once
per type version (SotW) or per resource body (delta) per process.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import discovery_pb2 as pb

from tests.bench.xds.h2client import CallFailed, NativeChannel
from tests.bench.xds.mesh import CLUSTER, ENDPOINTS, LISTENER, ROUTE
from tests.bench.xds.wire import Response

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),
                   ("grpc.max_receive_message_length", 64 * 1024 * 1024))
ORDER = (CLUSTER, ENDPOINTS, LISTENER, ROUTE)

_NAMES: dict[tuple[str, bytes], tuple[str, ...]] = {}
_WANTED: dict[tuple[str, str], tuple[str, ...]] = {}
DEBUG_FAILURES = bool(os.environ.get("BENCH_DEBUG_FAILURES"))


def referenced_names(type_url: str, value: bytes) -> tuple[str, ...]:
    """The EDS (RDS) names a Cluster (Listener) asks for next, memoised per resource body."""
    key = (type_url, value)
    found = _NAMES.get(key)
    if found is None:
        found = _NAMES[key] = (_eds_names(value) if type_url == CLUSTER
                               else _rds_names(value))
    return found


def _wanted(type_url: str, response: Response) -> tuple[str, ...]:
    """The EDS (RDS) names a whole CDS (LDS) response asks for, once per type version."""
    key = (type_url, response.version)
    found = _WANTED.get(key)
    if found is None:
        found = _WANTED[key] = tuple(sorted({name for value in response.any_values()
                                             for name in referenced_names(type_url, value)}))
    return found


def _eds_names(value: bytes) -> tuple[str, ...]:
    message = cluster_pb2.Cluster.FromString(value)
    if message.type != cluster_pb2.Cluster.EDS:
        return ()
    return (message.eds_cluster_config.service_name or message.name,)


def _rds_names(value: bytes) -> tuple[str, ...]:
    message = listener_pb2.Listener.FromString(value)
    names = []
    for chain in message.filter_chains:
        for network_filter in chain.filters:
            config = network_filter.typed_config
            if config.type_url.endswith("HttpConnectionManager"):
                hcm = hcm_pb2.HttpConnectionManager.FromString(config.value)
                if hcm.HasField("rds"):
                    names.append(hcm.rds.route_config_name)
    return tuple(names)


@dataclass
class Record:
    """What one simulated sidecar saw."""

    converged_at: float = 0.0
    eds_version: str = ""
    eds_updated_at: float = 0.0
    failures: Counter[str] = field(default_factory=Counter)
    held: dict[str, int] = field(default_factory=dict)  # type -> resources held
    bytes_received: int = 0


class Backoff:
    """Envoy's default gRPC stream backoff: jittered, 500 ms doubling to 30 s."""

    def __init__(self) -> None:
        self.ceiling = 0.5

    def next(self) -> float:
        delay = random.uniform(0, self.ceiling)
        self.ceiling = min(30.0, self.ceiling * 2)
        return delay


class SotwSidecar:
    """One Envoy-like ADS client, state of the world."""

    method = ADS

    def __init__(self, node_id: str, node_cluster: str, on_change: Callable[[], None],
                 metadata: dict[str, str] | None = None) -> None:
        self.node: dict[str, Any] = {"id": node_id, "cluster": node_cluster}
        if metadata:
            self.node["metadata"] = metadata
        self.record = Record()
        self.on_change = on_change

    async def run(self, target: str, native: bool = False) -> None:
        if native:
            await self.run_native(target)
            return
        backoff = Backoff()
        async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as channel:
            while True:
                try:
                    await self.stream(channel)
                    self.record.failures["EOF"] += 1
                except grpc.aio.AioRpcError as error:
                    reason = f"{error.code().name}: {error.details()}"
                    self.record.failures[reason] += 1
                    if DEBUG_FAILURES:  # what gRPC core says (BENCH_DEBUG_FAILURES=1)
                        self.record.failures[f"{reason} | {error.debug_error_string()}"] += 1
                await asyncio.sleep(backoff.next())

    async def run_native(self, target: str) -> None:
        """The same over tests/bench/xds/h2client.py: a new connection per attempt, as Envoy
        reconnects."""
        backoff = Backoff()
        while True:
            try:
                async with NativeChannel(target) as channel:
                    await self.stream(channel)  # type: ignore[arg-type]
                self.record.failures["EOF"] += 1
            except CallFailed as error:
                self.record.failures[error.reason] += 1
            except OSError as error:
                self.record.failures[f"UNAVAILABLE: connect: {error.strerror}"] += 1
            await asyncio.sleep(backoff.next())

    def call(self, channel: grpc.aio.Channel) -> Any:
        return channel.stream_stream(self.method, request_serializer=_bytes,
                                     response_deserializer=_bytes)()

    async def stream(self, channel: grpc.aio.Channel) -> None:
        call = self.call(channel)
        subscribed = {CLUSTER: ()}  # type -> names (wildcard: empty)
        await call.write(pb.DiscoveryRequest(type_url=CLUSTER, node=self.node)
                         .SerializeToString())
        while (raw := await call.read()) is not grpc.aio.EOF:
            response = Response(raw)
            self.record.bytes_received += len(raw)
            for request in self.handle(response, subscribed):
                await call.write(request.SerializeToString())

    def handle(self, response: Response, subscribed: dict[str, tuple[str, ...]]) -> list[Any]:
        type_url = response.type_url
        ack = pb.DiscoveryRequest(type_url=type_url, version_info=response.version,
                                  response_nonce=response.nonce,
                                  resource_names=subscribed.get(type_url, ()))
        requests = [ack]
        if type_url in (CLUSTER, LISTENER):
            self.record.held[type_url] = len(response.resources)
            wanted = _wanted(type_url, response)
            child = ENDPOINTS if type_url == CLUSTER else ROUTE
            if subscribed.get(child) != wanted:
                subscribed[child] = wanted
                requests.append(pb.DiscoveryRequest(type_url=child, resource_names=wanted))
        else:
            # EDS/RDS responses may carry only what changed (xds_protocol.rst, "Grouping
            # Resources into Responses"): count what this client holds by name.
            self.record.held[type_url] = max(self.record.held.get(type_url, 0),
                                             len(response.resources))
        if type_url == ENDPOINTS:
            self._endpoints(response.version)
            if LISTENER not in subscribed:  # Envoy asks for listeners once clusters warmed
                subscribed[LISTENER] = ()
                requests.append(pb.DiscoveryRequest(type_url=LISTENER))
        if type_url == ROUTE and not self.record.converged_at:
            self.record.converged_at = time.time()
            self.on_change()
        return requests

    def _endpoints(self, version: str) -> None:
        if version != self.record.eds_version:
            self.record.eds_version, self.record.eds_updated_at = version, time.time()
            self.on_change()


class DeltaSidecar(SotwSidecar):
    """The same subscriptions over incremental xDS (DeltaAggregatedResources)."""

    method = DELTA

    async def stream(self, channel: grpc.aio.Channel) -> None:
        call = self.call(channel)
        held: dict[str, dict[str, tuple[str, ...]]] = {type_url: {} for type_url in ORDER}
        subscribed: dict[str, set[str]] = {CLUSTER: set()}  # type -> names (wildcard: empty)
        await call.write(pb.DeltaDiscoveryRequest(type_url=CLUSTER, node=self.node)
                         .SerializeToString())
        while (raw := await call.read()) is not grpc.aio.EOF:
            response = Response(raw, delta=True)
            self.record.bytes_received += len(raw)
            for request in self.handle_delta(response, held, subscribed):
                await call.write(request.SerializeToString())

    def handle_delta(self, response: Response, held: dict[str, dict[str, tuple[str, ...]]],
                     subscribed: dict[str, set[str]]) -> list[Any]:
        type_url = response.type_url
        mine = held[type_url]
        for name in response.removed:
            mine.pop(name, None)
        for name, value in response.delta_resources():
            mine[name] = (referenced_names(type_url, value)
                          if type_url in (CLUSTER, LISTENER) else ())
        self.record.held[type_url] = len(mine)
        requests = [pb.DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)]
        if type_url in (CLUSTER, LISTENER):
            child = ENDPOINTS if type_url == CLUSTER else ROUTE
            wanted = {name for names in mine.values() for name in names}
            names = subscribed.setdefault(child, set())
            new, gone = sorted(wanted - names), sorted(names - wanted)
            if new or gone:
                names.update(new)
                names.difference_update(gone)
                requests.append(pb.DeltaDiscoveryRequest(
                    type_url=child, resource_names_subscribe=new,
                    resource_names_unsubscribe=gone))
        if type_url == ENDPOINTS:
            self._endpoints(response.version)
            if LISTENER not in subscribed:  # Envoy asks for listeners once clusters warmed
                subscribed[LISTENER] = set()
                requests.append(pb.DeltaDiscoveryRequest(type_url=LISTENER))
        if type_url == ROUTE and not self.record.converged_at:
            self.record.converged_at = time.time()
            self.on_change()
        return requests


def _bytes(data: bytes) -> bytes:
    return data
