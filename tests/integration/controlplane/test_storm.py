"""New streams while the server's event loop is busy: every stream is answered.

gRPC core holds a new call until the asyncio server asks for it from its loop, one call at a
time; a call held longer than `grpc.server_max_unrequested_time_in_server` (30 s by default) is
cancelled when the loop next asks, before any response. That is how sidecars saw CANCELLED at
3,000+ (controlplane/main.py STORM_OPTIONS): the loop was busy answering earlier streams for
longer than that. Here streams start while the loop is blocked for longer than gRPC's default;
with gRPC's defaults the first ones are cancelled (`test_with_grpc_defaults_...`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
import yaml
from envoy.service.discovery.v3 import discovery_pb2 as pb

from controlplane.cache import ResourceCache
from controlplane.main import SERVER_OPTIONS
from controlplane.observe import Observer
from controlplane.server import DiscoveryServer
from controlplane.sources.files import FileSource
from protos.registry import CLUSTER
from tests.unit.controlplane.builders import cluster, endpoints

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
STREAMS = 200
LATE = 20
BUSY = 34.0  # longer than gRPC's default 30 s


def open_streams(port: int, late_after: float, started: threading.Event,
                 outcome: Counter[str]) -> None:
    """From another thread (the server's loop is blocked meanwhile): connect, start most
    streams at once and the last LATE ones one by one from `late_after` seconds on (gRPC core
    looks at the age of the calls it holds when a new one arrives), then read each one's first
    response."""
    request = pb.DiscoveryRequest(type_url=CLUSTER, node={"id": "storm"})
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}",
                                      options=(("grpc.use_local_subchannel_pool", 1),))
                for _ in range(STREAMS)]  # a connection each, as sidecars have
    try:
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=60)
        started.set()
        began = time.monotonic()
        calls = []
        for index, channel in enumerate(channels):
            if index >= STREAMS - LATE:
                time.sleep(max(0.1, began + late_after - time.monotonic()))
                late_after += 0.1
            calls.append(channel.stream_stream(
                ADS, request_serializer=pb.DiscoveryRequest.SerializeToString,
                response_deserializer=pb.DiscoveryResponse.FromString)(iter([request]),
                                                                       timeout=120))
        for call in calls:
            try:
                outcome["answered" if next(call).resources else "empty"] += 1
            except grpc.RpcError as error:
                outcome[error.code().name] += 1
            call.cancel()
    finally:
        for channel in channels:
            channel.close()


async def storm(tmp_path: Path, options: tuple[tuple[str, int], ...],
                busy: float = BUSY) -> Counter[str]:
    config = tmp_path / "mesh.yaml"
    config.write_text(yaml.safe_dump({"resources": [cluster("a"), endpoints("a", 1)]}))
    cache = ResourceCache()
    observer = Observer(cache)
    assert FileSource(config, cache).poll()
    server = grpc.aio.server(options=options)
    server.add_generic_rpc_handlers(DiscoveryServer(cache, observer).generic_handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    outcome: Counter[str] = Counter()
    started = threading.Event()
    client = threading.Thread(target=open_streams, args=(port, busy - 3.0, started, outcome))
    try:
        client.start()
        await asyncio.to_thread(started.wait, 120)
        time.sleep(busy)  # noqa: ASYNC251 (the point: the loop is busy, core holds new calls)
        await asyncio.to_thread(client.join, 120)
    finally:
        await server.stop(grace=None)
        client.join(timeout=30)
    return outcome


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_streams_held_while_the_loop_is_busy_are_answered_not_cancelled(tmp_path):
    outcome = await storm(tmp_path, SERVER_OPTIONS)
    assert outcome == Counter({"answered": STREAMS})


@pytest.mark.slow
async def test_with_grpc_defaults_streams_held_too_long_are_cancelled(tmp_path):
    """The cause, shown in a few seconds: gRPC's limit at 1 s instead of its default 30 s."""
    short = (*(item for item in SERVER_OPTIONS if "unrequested" not in item[0]),
             ("grpc.server_max_unrequested_time_in_server", 1))
    outcome = await storm(tmp_path, short, busy=4.0)
    assert outcome["CANCELLED"] > 0 and outcome["answered"] + outcome["CANCELLED"] == STREAMS
