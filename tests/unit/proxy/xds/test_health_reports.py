"""Health reports on the ADS stream (proxy/xds/client.py, protocol.py, delta.py): Istio's
HealthInformation type URL, healthy without error_detail, unhealthy with it; sent without
waiting for a response, and sent again on each new stream."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from protos.registry import CLUSTER, LISTENER
from proxy.stats import Stats
from proxy.xds.client import AdsClient
from proxy.xds.delta import DeltaProtocol
from proxy.xds.protocol import HEALTH_TYPE_URL, AdsProtocol
from tests.unit.proxy.xds.test_ads_protocol import FakeApplier, response

NODE = base_pb2.Node(id="sidecar-1", cluster="web")


class Applier(FakeApplier):
    def apply_delta(self, type_url: str, version: str, added: Any, removed: Any) -> None:
        self.applied.append((type_url, version))


class FakeCall:
    """One bidi stream: responses fed by the test, requests recorded."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[Any] = asyncio.Queue()
        self.written: list[Any] = []
        self.wrote = asyncio.Event()

    async def read(self) -> Any:
        return await self.responses.get()

    async def write(self, request: Any) -> None:
        self.written.append(request)
        self.wrote.set()

    def types(self) -> list[str]:
        return [request.type_url for request in self.written]


class FakeStub:
    calls: list[FakeCall] = []

    def __init__(self, _channel: Any) -> None:
        pass

    def StreamAggregatedResources(self, metadata: Any = None) -> FakeCall:
        return FakeStub.calls.pop(0)

    DeltaAggregatedResources = StreamAggregatedResources


async def written(call: FakeCall, count: int) -> None:
    async with asyncio.timeout(5):
        while len(call.written) < count:
            call.wrote.clear()
            await call.wrote.wait()


def test_reports_carry_the_type_url_and_error_detail_sotw_and_delta() -> None:
    for protocol in (AdsProtocol(NODE), DeltaProtocol(NODE, node_on_every_request=False)):
        healthy = protocol.health_report(True)
        assert healthy.type_url == HEALTH_TYPE_URL
        assert not healthy.HasField("error_detail") and healthy.node.id == "sidecar-1"
        sick = protocol.health_report(False, "127.0.0.1:8080: Connection refused")
        assert sick.error_detail.message == "127.0.0.1:8080: Connection refused"
        # the node as on any request: on every one, or only on the stream's first
        assert sick.HasField("node") == protocol.node_on_every_request
    delta = DeltaProtocol(NODE, node_on_every_request=False)
    assert isinstance(delta.health_report(True), discovery_pb2.DeltaDiscoveryRequest)


def delta_response(type_url: str, nonce: str) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse(type_url=type_url, nonce=nonce,
                                                system_version_info="v1")


@pytest.mark.parametrize("delta", [False, True])
async def test_a_report_goes_out_at_once_and_again_on_the_next_stream(delta: bool) -> None:
    protocol: AdsProtocol | DeltaProtocol = DeltaProtocol(NODE) if delta else AdsProtocol(NODE)
    protocol.subscribe_wildcard([CLUSTER, LISTENER])
    applier = Applier()
    client = AdsClient("127.0.0.1:1", protocol, applier, Stats(), stub=FakeStub)
    first, second = FakeCall(), FakeCall()
    FakeStub.calls = [first, second]
    client.report_health(False, "refused")
    stream = asyncio.create_task(client._one_stream())
    await written(first, 3)
    assert first.types() == [CLUSTER, LISTENER, HEALTH_TYPE_URL]
    assert first.written[2].error_detail.message == "refused"
    client.report_health(True)  # no response is coming: the report does not wait for one
    await written(first, 4)
    assert first.types()[3] == HEALTH_TYPE_URL and not first.written[3].HasField("error_detail")
    first.responses.put_nowait(delta_response(CLUSTER, "n1") if delta
                               else response(CLUSTER, "v1", "n1"))
    await written(first, 5)
    assert (first.written[4].type_url, first.written[4].response_nonce) == (CLUSTER, "n1")
    assert not first.written[4].HasField("error_detail") and applier.applied == [(CLUSTER, "v1")]
    first.responses.put_nowait(grpc.aio.EOF)
    await asyncio.wait_for(stream, 5)
    stream = asyncio.create_task(client._one_stream())  # a reconnect: the last report again
    await written(second, 3)
    assert second.types() == [CLUSTER, LISTENER, HEALTH_TYPE_URL]
    assert not second.written[2].HasField("error_detail")
    second.responses.put_nowait(grpc.aio.EOF)
    await asyncio.wait_for(stream, 5)


async def test_without_reports_the_stream_sends_none() -> None:
    protocol = AdsProtocol(NODE)
    protocol.subscribe_wildcard([CLUSTER])
    client = AdsClient("127.0.0.1:1", protocol, FakeApplier(), Stats(), stub=FakeStub)
    call = FakeCall()
    FakeStub.calls = [call]
    stream = asyncio.create_task(client._one_stream())
    call.responses.put_nowait(response(CLUSTER, "v1", "n1"))
    await written(call, 2)
    call.responses.put_nowait(grpc.aio.EOF)
    await asyncio.wait_for(stream, 5)
    assert call.types() == [CLUSTER, CLUSTER]
