"""State of the world with partial updates (the server's default): a change of EDS/RDS/SDS
resources sends only what changed (xds_protocol.rst, "Grouping Resources into Responses");
Listener and Cluster responses, first answers, re-subscriptions and warming answers stay whole."""

from __future__ import annotations

from controlplane.protocol.sotw import SotwStream
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import (
    Holder,
    ack,
    cluster,
    endpoints,
    listener,
    names,
    pushes,
    request,
    route,
    snapshot,
)

BASE = (cluster("a"), cluster("b"), endpoints("a", 1), endpoints("b", 2),
        listener("http", "main"), route("main", "a", "b"))


def subscribed(*resources):
    holder = Holder(snapshot(*resources))
    stream = SotwStream(holder, partial_updates=True)
    [cds] = pushes(stream.receive(request(CLUSTER, node_id="n1"), 0))
    ack(stream, cds)
    [eds] = pushes(stream.receive(request(CLUSTER_LOAD_ASSIGNMENT, ("a", "b")), 0))
    assert names(eds) == ["a", "b"]  # the first answer holds every subscribed name
    ack(stream, eds, ("a", "b"))
    [lds] = pushes(stream.receive(request(LISTENER), 0))
    ack(stream, lds)
    [rds] = pushes(stream.receive(request(ROUTE_CONFIGURATION, ("main",)), 0))
    ack(stream, rds, ("main",))
    return stream, holder


def test_an_endpoint_change_sends_only_that_endpoint_set():
    stream, holder = subscribed(*BASE)
    holder.current = snapshot(*BASE[:3], endpoints("b", 3), *BASE[4:])
    [push] = pushes(stream.snapshot_changed(1))
    assert push.type_url == CLUSTER_LOAD_ASSIGNMENT and names(push) == ["b"]
    assert push.version == holder.current.of_type(CLUSTER_LOAD_ASSIGNMENT).version
    assert pushes(ack(stream, push, ("a", "b"))) == []
    assert pushes(stream.snapshot_changed(2)) == []  # the client is taken to hold it all


def test_a_cluster_change_is_followed_by_its_whole_endpoint_sets():
    stream, holder = subscribed(*BASE)
    holder.current = snapshot(cluster("a", "3s"), *BASE[1:3], endpoints("b", 3), *BASE[4:])
    cds, eds = pushes(stream.snapshot_changed(1))
    assert cds.type_url == CLUSTER and names(cds) == ["a", "b"]  # a full set, always
    assert names(eds) == ["a", "b"]  # the re-created cluster warms on its endpoints


def test_removals_alone_send_nothing_and_a_resubscription_is_answered_whole():
    stream, holder = subscribed(*BASE)
    holder.current = snapshot(*BASE[:3], *BASE[4:])  # endpoints of b gone
    assert pushes(stream.snapshot_changed(1)) == []
    holder.current = snapshot(*BASE)
    [back] = pushes(stream.snapshot_changed(2))
    assert names(back) == ["b"]
    ack(stream, back, ("a", "b"))
    [again] = pushes(stream.receive(request(CLUSTER_LOAD_ASSIGNMENT, ("a",), nonce=back.nonce,
                                            version=back.version), 3))
    assert names(again) == ["a"]


def test_a_route_change_sends_the_changed_route_configuration():
    stream, holder = subscribed(*BASE, route("other", "a"))
    [rds] = pushes(stream.receive(request(ROUTE_CONFIGURATION, ("main", "other")), 0))
    ack(stream, rds, ("main", "other"))
    holder.current = snapshot(*BASE[:5], route("main", "b", "a"), route("other", "a"))
    [push] = pushes(stream.snapshot_changed(1))
    assert push.type_url == ROUTE_CONFIGURATION and names(push) == ["main"]
