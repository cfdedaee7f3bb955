"""The discovery server over the native transport (controlplane/transport/), on loopback: the
byte budget is not held hostage by a client that takes nothing, and test_storm.py's storm of
new streams while the event loop is busy is answered (grpcio's core cancelled such streams)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import ngh2
import pytest
import yaml
from envoy.service.discovery.v3 import discovery_pb2 as pb

from controlplane.cache import ResourceCache
from controlplane.fanout import Pacer
from controlplane.observe import Observer
from controlplane.server import DiscoveryServer
from controlplane.sources.files import FileSource
from controlplane.transport.grpc_messages import prefix
from controlplane.transport.h2_server import H2Server
from protos.registry import CLUSTER
from tests.integration.controlplane.test_native_transport import raw_call, wait_until
from tests.integration.controlplane.test_storm import STREAMS, open_streams
from tests.unit.controlplane.builders import cluster, endpoints

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def request(node: str) -> pb.DiscoveryRequest:
    return pb.DiscoveryRequest(type_url=CLUSTER, node={"id": node})


async def serve(tmp_path: Path, *, budget: int, drain_grace: float
                ) -> tuple[H2Server, int, DiscoveryServer]:
    config = tmp_path / "mesh.yaml"
    config.write_text(yaml.safe_dump({"resources": [
        *(item for index in range(50) for item in (cluster(f"c{index}"),
                                                    endpoints(f"c{index}", 1)))]}))
    cache = ResourceCache()
    assert FileSource(config, cache).poll()
    discovery = DiscoveryServer(cache, Observer(cache), Pacer(budget=budget))
    server = H2Server(discovery.methods(), drain_grace=drain_grace)
    return server, await server.start("127.0.0.1", 0), discovery


async def first_response(port: int, node: str) -> pb.DiscoveryResponse:
    """A grpcio ADS stream subscribing to clusters as `node`: its first response."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            ADS, request_serializer=pb.DiscoveryRequest.SerializeToString,
            response_deserializer=pb.DiscoveryResponse.FromString)()
        await call.write(request(node))
        answer: pb.DiscoveryResponse = await asyncio.wait_for(call.read(), 5)
        call.cancel()
    return answer


@pytest.fixture
async def stalled_server(tmp_path: Path) -> AsyncIterator[tuple[H2Server, int]]:
    server, port, _ = await serve(tmp_path, budget=1, drain_grace=0.3)  # one write at a time
    try:
        yield server, port
    finally:
        await server.close()


async def open_stalled_stream(port: int) -> asyncio.StreamWriter:
    """An ADS stream from a client whose flow-control window is 0 (RFC 9113 6.9.2): the
    server can send it no DATA at all."""
    conn = ngh2.Connection(ngh2.Role.CLIENT, ngh2.Configuration())
    conn.initiate_connection({int(ngh2.Setting.INITIAL_WINDOW_SIZE): 0})
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream_id = conn.send_request([
        (b":method", b"POST"), (b":scheme", b"http"), (b":path", ADS.encode()),
        (b":authority", b"cp"), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    body = request("stalled").SerializeToString()
    conn.send_data(stream_id, prefix(len(body)) + body)
    writer.write(conn.data_to_send())
    await writer.drain()
    return writer


async def test_a_client_that_takes_nothing_does_not_hold_the_budget(
        stalled_server: tuple[H2Server, int]) -> None:
    server, port = stalled_server
    stalled = await open_stalled_stream(port)
    try:
        await asyncio.sleep(0.2)  # its response is queued and holds the whole budget
        answer = await first_response(port, "healthy")
        assert len(answer.resources) == 50
        stalls = [call.stalled for connection in server.connections
                  for call in connection.calls.values()]
        assert 1 in stalls  # the stalled client's write gave the budget back
    finally:
        stalled.close()


@pytest.mark.timeout(120)
async def test_streams_opened_while_the_loop_is_busy_are_answered(tmp_path: Path) -> None:
    server, port, _ = await serve(tmp_path, budget=64 << 20, drain_grace=10.0)
    outcome: Counter[str] = Counter()
    started = threading.Event()
    client = threading.Thread(target=open_streams, args=(port, 2.0, started, outcome))
    try:
        client.start()
        await asyncio.to_thread(started.wait, 60)
        time.sleep(4.0)  # noqa: ASYNC251 (the point: connections and streams wait meanwhile)
        await asyncio.to_thread(client.join, 90)
    finally:
        await server.close()
        client.join(timeout=30)
    assert outcome == Counter({"answered": STREAMS})


async def test_a_response_goes_out_in_its_pieces_never_joined(tmp_path: Path) -> None:
    """grpcio needs one bytes object per response (cache/encoder.py joins the shared chunks);
    the native transport hands libnghttp2 the pieces and the client gets the same message."""
    server, port, discovery = await serve(tmp_path, budget=64 << 20, drain_grace=10.0)
    try:
        answer = await first_response(port, "pieces")
    finally:
        await server.close()
    assert sorted(resource.value for resource in answer.resources)  # whole, parseable
    assert (len(answer.resources), answer.type_url, answer.nonce) == (50, CLUSTER, "1")
    assert discovery.encoder.joined == 0


async def test_a_request_that_is_no_discovery_request_ends_the_stream_with_internal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The ADS stream reads in a task of its own (server.py); a request that does not parse
    still ends the call with INTERNAL, as grpcio ends it, and logs no error."""
    server, port, _ = await serve(tmp_path, budget=64 << 20, drain_grace=10.0)
    try:
        answer = await raw_call(port, ADS, body=prefix(4) + b"\xff\xff\xff\xff")
        await wait_until(lambda: not server.tasks)
    finally:
        await server.close()
    assert answer.grpc_status == b"13"
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
