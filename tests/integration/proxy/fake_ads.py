"""Scripted ADS servers for tests: the test pushes responses and reads the sidecar's requests
(ACKs, NACKs, subscriptions) in order. FakeAds speaks state of the world
(StreamAggregatedResources), FakeDeltaAds incremental xDS (DeltaAggregatedResources).
Threads, not asyncio, so blocking test code can drive them; `stop()` and a new server on the
same port make the client reconnect."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf.message import Message

from protos.loader import pack_any
from tests.support.ports import free_port


class _ScriptedAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.requests: list[Any] = []
        self._arrived = threading.Condition()
        self._responses: queue.Queue[Any] = queue.Queue()
        self._nonce = 0
        self.streams = 0
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)

    def _serve(self, request_iterator: Iterator[Any],
               context: grpc.ServicerContext) -> Iterator[Any]:
        self.streams += 1
        threading.Thread(target=self._read, args=(request_iterator,), daemon=True).start()
        while context.is_active():
            try:
                yield self._responses.get(timeout=0.05)
            except queue.Empty:
                continue

    def _read(self, request_iterator: Iterator[Any]) -> None:
        try:
            for request in request_iterator:
                with self._arrived:
                    self.requests.append(request)
                    self._arrived.notify_all()
        except grpc.RpcError:
            pass

    def _next_nonce(self) -> str:
        self._nonce += 1
        return f"nonce-{self._nonce}"

    def wait_request(self, type_url: str, *, nonce: str | None = None,
                     timeout: float = 20.0, after: int = 0) -> Any:
        """The first request for `type_url` (answering `nonce` if given) at index >= after."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for request in self.requests[after:]:
                    if request.type_url == type_url and (
                            nonce is None or request.response_nonce == nonce):
                        return request
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {type_url} request (nonce {nonce}): "
                                       f"{[(r.type_url, r.response_nonce) for r in self.requests]}")
                self._arrived.wait(left)


class FakeAds(_ScriptedAds):
    def StreamAggregatedResources(self, request_iterator: Iterator[Any],
                                  context: grpc.ServicerContext) -> Iterator[Any]:
        return self._serve(request_iterator, context)

    def push(self, type_url: str, version: str, resources: list[Message]) -> str:
        """Send a response; returns its nonce."""
        nonce = self._next_nonce()
        self._responses.put(discovery_pb2.DiscoveryResponse(
            type_url=type_url, version_info=version, nonce=nonce,
            resources=[pack_any(item) for item in resources]))
        return nonce


class FakeDeltaAds(_ScriptedAds):
    def DeltaAggregatedResources(self, request_iterator: Iterator[Any],
                                 context: grpc.ServicerContext) -> Iterator[Any]:
        return self._serve(request_iterator, context)

    def push(self, type_url: str, resources: list[tuple[tuple[str, str], Message]] | None = None,
             removed: list[str] | None = None, *, system_version: str = "",
             raw: list[discovery_pb2.Resource] | None = None) -> str:
        """Send ((name, version), message) pairs as added resources, `raw` Resource messages
        as they are, and `removed` names; returns the response's nonce."""
        nonce = self._next_nonce()
        items = [discovery_pb2.Resource(name=name, version=version, resource=pack_any(item))
                 for (name, version), item in (resources or [])]
        self._responses.put(discovery_pb2.DeltaDiscoveryResponse(
            type_url=type_url, system_version_info=system_version, nonce=nonce,
            resources=[*items, *(raw or [])], removed_resources=removed or []))
        return nonce
