"""Every state-of-the-world protocol behaviour of the issue, one test each, without sockets."""

from __future__ import annotations

import pytest

from controlplane.protocol.events import (
    Acked,
    Nacked,
    NackRecord,
    NodeIdentified,
    ProtocolError,
    StaleNonceIgnored,
)
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import (
    ack,
    cluster,
    endpoints,
    listener,
    names,
    new_stream,
    pushes,
    request,
    route,
    snapshot,
)

BASE = (cluster("a"), cluster("b"), endpoints("a", 1), endpoints("b", 2),
        listener("http", "main"), route("main", "a", "b"))


def subscribed_ads(*resources: dict) -> tuple:
    """A stream subscribed to CDS/EDS/LDS/RDS like Envoy, everything ACKed."""
    stream, holder = new_stream(snapshot(*resources))
    [cds] = pushes(stream.receive(request(CLUSTER, node_id="n1"), 0))
    ack(stream, cds)
    [eds] = pushes(stream.receive(request(CLUSTER_LOAD_ASSIGNMENT, ("a", "b")), 0))
    ack(stream, eds, ("a", "b"))
    [lds] = pushes(stream.receive(request(LISTENER), 0))
    ack(stream, lds)
    [rds] = pushes(stream.receive(request(ROUTE_CONFIGURATION, ("main",)), 0))
    ack(stream, rds, ("main",))
    return stream, holder, {"cds": cds, "eds": eds, "lds": lds, "rds": rds}


def test_node_is_taken_from_the_first_request_only():
    stream, _ = new_stream(snapshot(*BASE))
    actions = stream.receive(request(CLUSTER, node_id="first"), 0)
    assert [a.node.id for a in actions if isinstance(a, NodeIdentified)] == ["first"]
    later = stream.receive(request(LISTENER, node_id="second"), 0)
    assert not any(isinstance(a, NodeIdentified) for a in later)
    assert stream.node is not None and stream.node.id == "first"


def test_every_response_has_a_fresh_nonce():
    stream, holder, sent = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a", "2s"), *BASE[1:])
    [again] = pushes(stream.snapshot_changed(1))
    nonces = [push.nonce for push in sent.values()] + [again.nonce]
    assert len(set(nonces)) == len(nonces)


def test_silence_after_ack_until_something_changes():
    stream, holder, sent = subscribed_ads(*BASE)
    assert pushes(ack(stream, sent["cds"])) == []  # a duplicate ACK is stale anyway
    holder.current = snapshot(*BASE)  # rebuilt, same content
    assert pushes(stream.snapshot_changed(1)) == []
    holder.current = snapshot(*BASE[:3], endpoints("b", 3), *BASE[4:])
    [push] = pushes(stream.snapshot_changed(2))
    assert push.type_url == CLUSTER_LOAD_ASSIGNMENT and names(push) == ["a", "b"]


def test_nack_is_recorded_not_resent_and_the_next_change_is_delivered():
    stream, holder, sent = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a", "5s"), *BASE[1:])
    [bad] = pushes(stream.snapshot_changed(1))
    actions = stream.receive(request(CLUSTER, nonce=bad.nonce, version=sent["cds"].version,
                                     error="connect_timeout too long"), 2)
    [nack] = [a for a in actions if isinstance(a, Nacked)]
    assert (nack.version, nack.message) == (bad.version, "connect_timeout too long")
    assert pushes(actions) == []
    cds = stream.subscriptions[CLUSTER]
    assert cds.last_nack == NackRecord(bad.version, "connect_timeout too long", at=2)
    assert cds.acked_version == sent["cds"].version
    holder.current = snapshot(cluster("a", "5s"), *BASE[1:])  # same content again: not resent
    assert pushes(stream.snapshot_changed(3)) == []
    holder.current = snapshot(cluster("a", "3s"), *BASE[1:])
    [fixed] = pushes(stream.snapshot_changed(4))
    assert fixed.type_url == CLUSTER and fixed.version != bad.version
    ack(stream, fixed, now=5)  # the NACK no longer holds: superseded by the ACKed version
    assert cds.last_nack == NackRecord(bad.version, "connect_timeout too long", at=2,
                                       superseded_by=fixed.version, superseded_at=5)
    holder.current = snapshot(cluster("a", "4s"), *BASE[1:])
    ack(stream, pushes(stream.snapshot_changed(6))[0], now=7)  # later ACKs leave it as it was
    assert (cds.last_nack.superseded_by, cds.last_nack.superseded_at) == (fixed.version, 5)


def test_stale_nonce_is_ignored():
    stream, holder, sent = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a", "2s"), *BASE[1:])
    [newer] = pushes(stream.snapshot_changed(1))
    actions = stream.receive(request(CLUSTER, nonce=sent["cds"].nonce,
                                     version=sent["cds"].version, error="old"), 2)
    assert [type(a) for a in actions] == [StaleNonceIgnored]
    assert stream.subscriptions[CLUSTER].last_nack is None
    assert stream.subscriptions[CLUSTER].awaiting_reply
    ack(stream, newer)
    assert stream.subscriptions[CLUSTER].acked_version == newer.version


def test_legacy_and_explicit_wildcard_get_every_resource():
    stream, _ = new_stream(snapshot(*BASE, cluster("c"), endpoints("c", 3)))
    [legacy] = pushes(stream.receive(request(CLUSTER), 0))
    assert names(legacy) == ["a", "b", "c"]
    assert pushes(ack(stream, legacy)) == []  # empty names later: still wildcard, no change
    assert stream.subscriptions[CLUSTER].wildcard
    other, _ = new_stream(snapshot(*BASE))
    [explicit] = pushes(other.receive(request(LISTENER, ("*",)), 0))
    assert names(explicit) == ["http"]


def test_named_resource_requested_before_it_exists_is_pushed_when_it_appears():
    stream, holder = new_stream(snapshot(*BASE))
    assert pushes(stream.receive(request(CLUSTER_LOAD_ASSIGNMENT, ("later",)), 0)) == []
    holder.current = snapshot(*BASE, cluster("later"), endpoints("later", 9))
    [push] = pushes(stream.snapshot_changed(1))
    assert names(push) == ["later"]


def test_each_named_resource_is_answered_as_soon_as_it_exists():
    stream, holder = new_stream(snapshot(*BASE))
    [first] = pushes(stream.receive(request(CLUSTER_LOAD_ASSIGNMENT, ("a", "missing")), 0))
    assert names(first) == ["a"]
    holder.current = snapshot(*BASE, cluster("missing"), endpoints("missing", 7))
    [second] = pushes(stream.snapshot_changed(1))
    assert names(second) == ["a", "missing"]


def test_resubscribing_to_an_unchanged_name_resends_it():
    stream, _ = new_stream(snapshot(*BASE))
    [first] = pushes(stream.receive(request(ROUTE_CONFIGURATION, ("main",)), 0))
    assert pushes(ack(stream, first, ())) == []  # unsubscribed: nothing to send
    [again] = pushes(stream.receive(request(ROUTE_CONFIGURATION, ("main",), nonce=first.nonce,
                                            version=first.version), 1))
    assert names(again) == ["main"] and again.nonce != first.nonce


def test_listeners_and_clusters_are_always_sent_as_full_sets():
    stream, holder, _ = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a", "9s"), *BASE[1:])
    [cds] = pushes(stream.snapshot_changed(1))
    assert names(cds) == ["a", "b"]  # b unchanged but included
    named, holder2 = new_stream(snapshot(*BASE, listener("other", "main", 10001)))
    [lds] = pushes(named.receive(request(LISTENER, ("http", "other")), 0))
    ack(named, lds, ("http", "other"))
    holder2.current = snapshot(*BASE, listener("other", "main", 10002))
    [lds2] = pushes(named.snapshot_changed(1))
    assert names(lds2) == ["http", "other"]
    holder2.current = snapshot(*BASE)  # "other" removed: an LDS set without it says so
    [lds3] = pushes(named.snapshot_changed(2))
    assert names(lds3) == ["http"]


def test_push_order_is_clusters_endpoints_listeners_routes():
    stream, holder, _ = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a", "2s"), cluster("b"), endpoints("a", 5),
                              endpoints("b", 2), listener("http", "main", 10009),
                              route("main", "b", "a"))
    order = [push.type_url for push in pushes(stream.snapshot_changed(1))]
    assert order == [CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION]


def test_removed_cluster_is_kept_until_routes_stop_naming_it():
    stream, holder, _ = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a"), endpoints("a", 1), listener("http", "main"),
                              route("main", "a"))
    sent = pushes(stream.snapshot_changed(1))
    # b is still named by the client's current routes: CDS keeps it (so nothing to send yet)
    assert [push.type_url for push in sent] == [CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION]
    assert sorted(stream.retained_clusters) == ["b"]
    eds, rds = sent
    assert pushes(ack(stream, eds, ("a", "b"))) == []
    [final] = pushes(ack(stream, rds, ("main",)))
    assert final.type_url == CLUSTER and names(final) == ["a"]


def test_removed_cluster_is_sent_with_new_clusters_until_routes_move():
    stream, holder, _ = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a"), cluster("c"), endpoints("a", 1), endpoints("c", 3),
                              listener("http", "main"), route("main", "a", "c"))
    cds, _eds, rds = pushes(stream.snapshot_changed(1))
    assert names(cds) == ["a", "b", "c"]
    ack(stream, cds)
    [final] = pushes(ack(stream, rds, ("main",)))
    assert names(final) == ["a", "c"] and final.version != cds.version


def test_removed_cluster_goes_at_once_when_no_route_changes():
    stream, holder, _ = subscribed_ads(cluster("a"), cluster("b"), endpoints("a", 1),
                                       endpoints("b", 2), listener("http", "main"),
                                       route("main", "a"))
    holder.current = snapshot(cluster("a"), endpoints("a", 1), listener("http", "main"),
                              route("main", "a"))
    cds = pushes(stream.snapshot_changed(1))[0]
    assert cds.type_url == CLUSTER and names(cds) == ["a"]


def test_endpoints_request_after_cluster_change_is_answered_while_warming():
    stream, holder, sent = subscribed_ads(*BASE)
    holder.current = snapshot(cluster("a", "3s"), *BASE[1:])
    [cds] = pushes(stream.snapshot_changed(1))
    ack(stream, cds)
    # Envoy re-requests the warming cluster's endpoints with the same names and last nonce.
    [eds] = pushes(ack(stream, sent["eds"], ("a", "b")))
    assert eds.type_url == CLUSTER_LOAD_ASSIGNMENT and names(eds) == ["a", "b"]
    assert pushes(ack(stream, eds, ("a", "b"))) == []  # and then silence again


def test_routes_request_after_listener_change_is_answered_while_warming():
    stream, holder, sent = subscribed_ads(*BASE)
    holder.current = snapshot(*BASE[:4], listener("http", "main", 10005), BASE[5])
    [lds] = pushes(stream.snapshot_changed(1))
    ack(stream, lds)
    [rds] = pushes(ack(stream, sent["rds"], ("main",)))
    assert names(rds) == ["main"]


def test_ack_reports_latency_from_the_push():
    stream, _ = new_stream(snapshot(*BASE))
    [cds] = pushes(stream.receive(request(CLUSTER), 10.0))
    [acked] = [a for a in ack(stream, cds, now=10.25) if isinstance(a, Acked)]
    assert acked.latency == pytest.approx(0.25)


def test_a_type_not_served_on_the_stream_is_a_protocol_error():
    stream, _ = new_stream(snapshot(*BASE))
    with pytest.raises(ProtocolError):
        stream.receive(request("type.googleapis.com/google.protobuf.Empty"), 0)


def test_first_request_after_a_reconnect_is_answered_even_with_an_old_nonce():
    stream, _ = new_stream(snapshot(*BASE))
    resumed = request(CLUSTER, nonce="17", version="old-version", node_id="n1")
    [push] = pushes(stream.receive(resumed, 0))
    assert names(push) == ["a", "b"] and push.nonce != "17"
