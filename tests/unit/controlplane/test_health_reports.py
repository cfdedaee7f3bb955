"""Health reports on an ADS stream (controlplane/protocol/health.py), SotW and delta: an
action saying healthy or not, with the message; no subscription, no response, no ACK/NACK."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from controlplane.cache import SnapshotCache
from controlplane.observe import Observer
from controlplane.protocol.delta import DeltaStream
from controlplane.protocol.events import (
    Acked,
    DeltaPush,
    HealthReported,
    Nacked,
    NodeIdentified,
    ProtocolError,
    Push,
    StaleNonceIgnored,
)
from controlplane.protocol.health import HEALTH_TYPE_URL
from controlplane.protocol.sotw import SotwStream
from protos.registry import CLUSTER, LISTENER
from tests.unit.controlplane.builders import (
    Holder,
    ack,
    cluster,
    listener,
    new_stream,
    pushes,
    request,
    route,
    snapshot,
)

BASE = (cluster("a"), listener("http", "main"), route("main", "a"))


def report(message: str | None = None, *, delta: bool = False, node_id: str = ""):
    kind = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
    found = kind(type_url=HEALTH_TYPE_URL, node=base_pb2.Node(id=node_id))
    if message is not None:
        found.error_detail.CopyFrom(status_pb2.Status(code=500, message=message))
    return found


def delta_stream() -> DeltaStream:
    return DeltaStream(Holder(snapshot(*BASE)))


@pytest.mark.parametrize("kind", ["sotw", "delta"])
def test_a_health_report_is_an_action_with_no_answer_and_no_subscription(kind: str) -> None:
    stream = new_stream(snapshot(*BASE))[0] if kind == "sotw" else delta_stream()
    delta = kind == "delta"
    actions = stream.receive(report(delta=delta, node_id="n1"), 0)
    assert actions[0] == NodeIdentified(stream.node)  # the first request carries the node
    assert actions[1:] == [HealthReported(True, "")]
    assert stream.node is not None and stream.node.id == "n1"
    assert stream.subscriptions == {}
    assert stream.receive(report("connect refused", delta=delta), 1) == [
        HealthReported(False, "connect refused")]
    assert not any(isinstance(action, Push | DeltaPush | Acked | Nacked | StaleNonceIgnored)
                   for action in actions)
    assert stream.subscriptions == {}


def test_a_report_between_a_push_and_its_ack_leaves_the_subscription_alone() -> None:
    stream, _ = new_stream(snapshot(*BASE))
    [lds] = pushes(stream.receive(request(LISTENER, node_id="n1"), 0))
    assert stream.receive(report("not yet"), 0) == [HealthReported(False, "not yet")]
    subscription = stream.subscriptions[LISTENER]
    assert subscription.awaiting_reply and subscription.last_nack is None
    assert [type(action) for action in ack(stream, lds)] == [Acked]
    assert stream.receive(report(), 1) == [HealthReported(True, "")]
    assert stream.subscriptions[LISTENER].acked_version == lds.version


def test_a_report_on_a_single_type_stream_is_refused_as_any_other_type() -> None:
    stream = SotwStream(Holder(snapshot(*BASE)), allowed_types=(CLUSTER,),
                        default_type=CLUSTER)
    with pytest.raises(ProtocolError, match="HealthInformation"):
        stream.receive(report(node_id="n1"), 0)


def test_the_observer_counts_no_ack_or_nack_for_a_report() -> None:
    stream, _ = new_stream(snapshot(*BASE))
    observer = Observer(SnapshotCache())
    stream_id = observer.opened(stream, "ADS", "peer")
    observer.record(stream_id, stream.receive(report("down", node_id="n1"), 0))
    assert observer.acks == {} and observer.nacks == {}
