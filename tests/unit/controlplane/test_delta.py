"""Incremental (delta) xDS protocol behaviours, one test each, without sockets."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from controlplane.protocol.delta import DeltaStream
from controlplane.protocol.events import Action, DeltaPush, Nacked, NackRecord, StaleNonceIgnored
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import (
    Holder,
    cluster,
    endpoints,
    listener,
    route,
    snapshot,
)

BASE = (cluster("a"), cluster("b"), endpoints("a", 1), endpoints("b", 2),
        listener("http", "main"), route("main", "a", "b"))


def delta(type_url: str, subscribe: tuple[str, ...] = (), unsubscribe: tuple[str, ...] = (), *,
          nonce: str = "", error: str = "", initial: dict[str, str] | None = None,
          ) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url, resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe), response_nonce=nonce,
        initial_resource_versions=initial or {})
    if error:
        request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return request


def pushes(actions: list[Action]) -> list[DeltaPush]:
    return [action for action in actions if isinstance(action, DeltaPush)]


def sent(push: DeltaPush) -> list[str]:
    return [resource.name for resource in push.resources]


def new_stream(*resources: dict) -> tuple[DeltaStream, Holder]:
    holder = Holder(snapshot(*resources))
    return DeltaStream(holder), holder


def acked(stream: DeltaStream, push: DeltaPush) -> list[Action]:
    return stream.receive(delta(push.type_url, nonce=push.nonce), 0)


def test_legacy_wildcard_then_only_changes_and_removals():
    stream, holder = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(CLUSTER), 0))
    assert sent(first) == ["a", "b"] and first.removed == ()
    assert pushes(acked(stream, first)) == []
    holder.current = snapshot(cluster("a", "3s"), *BASE[1:])
    [change] = pushes(stream.snapshot_changed(1))
    assert sent(change) == ["a"] and change.nonce != first.nonce
    acked(stream, change)
    holder.current = snapshot(cluster("a", "3s"), endpoints("a", 1))
    [removal] = pushes(stream.snapshot_changed(2))
    assert sent(removal) == [] and removal.removed == ("b",)


def test_named_resource_that_does_not_exist_is_reported_removed_then_sent():
    stream, holder = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(CLUSTER_LOAD_ASSIGNMENT, ("a", "later")), 0))
    assert sent(first) == ["a"] and first.removed == ("later",)
    acked(stream, first)
    assert pushes(stream.snapshot_changed(1)) == []  # still missing: said once is enough
    holder.current = snapshot(*BASE, cluster("later"), endpoints("later", 5))
    [appeared] = pushes(stream.snapshot_changed(2))
    assert sent(appeared) == ["later"]


def test_initial_resource_versions_are_not_resent():
    current = snapshot(*BASE)
    held = {name: item.version for name, item in current.of_type(CLUSTER).resources.items()}
    stream, _ = new_stream(cluster("a"), cluster("b", "9s"), *BASE[2:])
    [first] = pushes(stream.receive(delta(CLUSTER, ("*",), initial=held), 0))
    assert sent(first) == ["b"]  # a unchanged since the client's last stream


def test_subscribing_again_to_a_held_name_resends_it():
    stream, _ = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(ROUTE_CONFIGURATION, ("main",)), 0))
    acked(stream, first)
    [again] = pushes(stream.receive(delta(ROUTE_CONFIGURATION, ("main",)), 0))
    assert sent(again) == ["main"]


def test_unsubscribing_needs_no_answer_and_stops_updates():
    stream, holder = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(CLUSTER_LOAD_ASSIGNMENT, ("a", "b")), 0))
    acked(stream, first)
    assert pushes(stream.receive(delta(CLUSTER_LOAD_ASSIGNMENT, (), ("b",)), 0)) == []
    holder.current = snapshot(*BASE[:3], endpoints("b", 7), *BASE[4:])
    assert pushes(stream.snapshot_changed(1)) == []


def test_unsubscribing_a_name_also_covered_by_the_wildcard_is_answered():
    stream, _ = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(CLUSTER, ("*", "a", "ghost")), 0))
    assert first.removed == ("ghost",)
    acked(stream, first)
    [answer] = pushes(stream.receive(delta(CLUSTER, (), ("a", "ghost")), 0))
    # a is still covered by the wildcard: sent; ghost is not: removed (xds_protocol.rst)
    assert sent(answer) == ["a"] and answer.removed == ("ghost",)


def test_subscription_changes_count_even_with_a_stale_nonce():
    stream, _ = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(CLUSTER_LOAD_ASSIGNMENT, ("a",)), 0))
    actions = stream.receive(delta(CLUSTER_LOAD_ASSIGNMENT, ("b",), nonce="old"), 0)
    assert any(isinstance(action, StaleNonceIgnored) for action in actions)
    [more] = pushes(actions)
    assert sent(more) == ["b"]
    assert stream.subscriptions[CLUSTER_LOAD_ASSIGNMENT].awaiting_reply  # `first` not ACKed
    assert first.nonce != more.nonce


def test_nack_is_recorded_not_resent_and_the_next_change_delivered():
    stream, holder = new_stream(*BASE)
    [first] = pushes(stream.receive(delta(CLUSTER), 0))
    acked(stream, first)
    holder.current = snapshot(cluster("a", "7s"), *BASE[1:])
    [bad] = pushes(stream.snapshot_changed(1))
    actions = stream.receive(delta(CLUSTER, nonce=bad.nonce, error="refused"), 2)
    [nack] = [action for action in actions if isinstance(action, Nacked)]
    assert nack.message == "refused" and pushes(actions) == []
    holder.current = snapshot(cluster("a", "7s"), *BASE[1:])
    assert pushes(stream.snapshot_changed(3)) == []
    holder.current = snapshot(cluster("a", "2s"), *BASE[1:])
    [fixed] = pushes(stream.snapshot_changed(4))
    assert sent(fixed) == ["a"]
    cds = stream.subscriptions[CLUSTER]
    assert cds.last_nack == NackRecord(bad.version, "refused", at=2)
    stream.receive(delta(CLUSTER, nonce=fixed.nonce), 5)  # ACK: the NACK is superseded
    assert cds.last_nack == NackRecord(bad.version, "refused", at=2,
                                       superseded_by=fixed.version, superseded_at=5)


def test_cluster_removal_waits_for_routes_and_pushes_keep_order():
    stream, holder = new_stream(*BASE)
    for type_url, names in ((CLUSTER, ()), (CLUSTER_LOAD_ASSIGNMENT, ("a", "b")),
                            (LISTENER, ()), (ROUTE_CONFIGURATION, ("main",))):
        [push] = pushes(stream.receive(delta(type_url, names), 0))
        acked(stream, push)
    holder.current = snapshot(cluster("a", "4s"), endpoints("a", 1), listener("http", "main"),
                              route("main", "a"))
    changes = pushes(stream.snapshot_changed(1))
    assert [push.type_url for push in changes] == [
        CLUSTER, CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION]
    cds, eds, rds = changes
    assert sent(cds) == ["a"] and cds.removed == ()  # b kept while routes still name it
    assert sent(eds) == ["a"] and eds.removed == ()  # a warms; b's endpoints stay too
    assert pushes(acked(stream, cds)) == [] and pushes(acked(stream, eds)) == []
    [removal] = pushes(acked(stream, rds))
    assert removal.type_url == CLUSTER and removal.removed == ("b",)


def test_an_updated_cluster_gets_its_unchanged_endpoints_again_for_warming():
    stream, holder = new_stream(*BASE)
    [cds] = pushes(stream.receive(delta(CLUSTER), 0))
    acked(stream, cds)
    [eds] = pushes(stream.receive(delta(CLUSTER_LOAD_ASSIGNMENT, ("a", "b")), 0))
    acked(stream, eds)
    holder.current = snapshot(cluster("a", "6s"), *BASE[1:])
    cds_update, warming = pushes(stream.snapshot_changed(1))
    assert sent(cds_update) == ["a"]
    assert warming.type_url == CLUSTER_LOAD_ASSIGNMENT and sent(warming) == ["a"]
    holder.current = snapshot(cluster("a", "6s"), cluster("c"), *BASE[1:], endpoints("c", 3))
    [new_cluster] = pushes(stream.snapshot_changed(2))  # a new cluster is not warming: its
    assert sent(new_cluster) == ["c"]  # endpoints come when the client subscribes to them


def test_a_stream_in_sync_holds_a_reference_not_a_copy_of_what_its_client_holds():
    stream, holder = new_stream(*BASE)
    pushes(stream.receive(delta(CLUSTER), 0))
    known = stream.subscriptions[CLUSTER].known
    assert dict(known) == {name: item.version for name, item in
                           holder.current.of_type(CLUSTER).resources.items()}
    assert known._changes == {}  # in line with the shared content: nothing of its own
    holder.current = snapshot(cluster("a", "3s"), *BASE[1:])
    [change] = pushes(stream.snapshot_changed(1))
    assert known._changes == {} and known["a"] == change.resources[0].version
