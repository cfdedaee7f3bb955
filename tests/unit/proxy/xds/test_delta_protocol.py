"""ADS delta client bookkeeping (proxy.xds.delta), no sockets: legacy wildcard and named
subscriptions, per-resource versions, ACK/NACK with nonces, interest changes as differences,
removed resources, heartbeats, malformed responses, and initial_resource_versions on a new
stream. Each expectation is what Envoy 1.40 sends (tests/conformance/proxy/
test_delta_ads_vs_envoy.py compares the two on the wire)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, duration_pb2

from protos.errors import ConfigError
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from proxy.stats import Stats
from proxy.xds.client import AdsClient
from proxy.xds.delta import DeltaProtocol, DeltaResource


def body(type_url: str) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=b"")


def response(type_url: str, nonce: str, added: Iterable[tuple[str, str]] = (),
             removed: Iterable[str] = (), system_version: str = ""
             ) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse(
        type_url=type_url, nonce=nonce, system_version_info=system_version,
        resources=[discovery_pb2.Resource(name=name, version=version, resource=body(type_url))
                   for name, version in added],
        removed_resources=list(removed))


class FakeApplier:
    """Records each delta; refuses resources whose version is in `bad`."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str, list[tuple[str, str]], list[str]]] = []
        self.bad: set[str] = set()
        self.wanted: dict[str, list[str]] = {CLUSTER_LOAD_ASSIGNMENT: [],
                                             ROUTE_CONFIGURATION: []}

    def apply(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        raise AssertionError("a delta client applies deltas")

    def apply_delta(self, type_url: str, version: str, added: tuple[DeltaResource, ...],
                    removed: tuple[str, ...]) -> None:
        for item in added:
            if item.version in self.bad:
                raise ConfigError("must be greater than 0", field="connect_timeout",
                                  resource=item.name)
        self.applied.append((type_url, version, [(r.name, r.version) for r in added],
                             list(removed)))

    def wanted_names(self, type_url: str) -> Iterable[str]:
        return self.wanted.get(type_url, [])


def new_client(node_on_every_request: bool = True) -> tuple[AdsClient, FakeApplier, Stats]:
    protocol = DeltaProtocol(base_pb2.Node(id="sidecar-1", cluster="web"),
                             node_on_every_request=node_on_every_request)
    protocol.subscribe_wildcard([CLUSTER, LISTENER])
    applier = FakeApplier()
    stats = Stats()
    return AdsClient("127.0.0.1:1", protocol, applier, stats), applier, stats


def started(node_on_every_request: bool = True
            ) -> tuple[AdsClient, FakeApplier, Stats, list[Any]]:
    client, applier, stats = new_client(node_on_every_request)
    return client, applier, stats, client.protocol.stream_started()


def test_first_requests_are_legacy_wildcard_cds_then_lds() -> None:
    client, _, _, requests = started()
    assert client.protocol.method == "DeltaAggregatedResources"
    assert [r.type_url for r in requests] == [CLUSTER, LISTENER]
    for request in requests:
        assert list(request.resource_names_subscribe) == []  # legacy wildcard, as Envoy
        assert list(request.resource_names_unsubscribe) == []
        assert dict(request.initial_resource_versions) == {}
        assert request.response_nonce == ""
        assert request.node.id == "sidecar-1"  # Envoy's default: the node on every request


def test_node_on_the_first_request_only_when_asked() -> None:
    client, _, _, requests = started(node_on_every_request=False)
    assert [r.HasField("node") for r in requests] == [True, False]
    [ack] = client.handle(response(CLUSTER, "n1", [("a", "1")]))
    assert not ack.HasField("node")
    assert client.protocol.stream_started()[0].HasField("node")  # each new stream


def test_ack_carries_the_nonce_and_the_applier_gets_each_resource_version() -> None:
    client, applier, stats, _ = started()
    [ack] = client.handle(response(CLUSTER, "n1", [("a", "1"), ("b", "7")],
                                   system_version="s1"))
    assert (ack.type_url, ack.response_nonce) == (CLUSTER, "n1")
    assert not ack.HasField("error_detail")
    assert list(ack.resource_names_subscribe) == [] and not ack.initial_resource_versions
    assert applier.applied == [(CLUSTER, "s1", [("a", "1"), ("b", "7")], [])]
    assert client.protocol.subscriptions[CLUSTER].held == {"a": "1", "b": "7"}
    assert stats.counter("cluster_manager.cds.update_success").value == 1


def test_removed_resources_are_applied_and_forgotten() -> None:
    client, applier, _, _ = started()
    client.handle(response(CLUSTER, "n1", [("a", "1"), ("b", "1")]))
    [ack] = client.handle(response(CLUSTER, "n2", [("a", "2")], removed=["b"]))
    assert ack.response_nonce == "n2"
    assert applier.applied[-1] == (CLUSTER, "", [("a", "2")], ["b"])
    assert client.protocol.subscriptions[CLUSTER].held == {"a": "2"}


def test_nack_keeps_the_versions_held_and_names_the_field() -> None:
    client, applier, stats, _ = started()
    client.handle(response(CLUSTER, "n1", [("a", "1")]))
    applier.bad.add("2")
    [nack] = client.handle(response(CLUSTER, "n2", [("a", "2"), ("c", "2")], removed=["b"]))
    assert nack.response_nonce == "n2"
    assert nack.error_detail.code == 3
    assert "connect_timeout" in nack.error_detail.message
    assert client.protocol.subscriptions[CLUSTER].held == {"a": "1"}
    assert stats.counter("cluster_manager.cds.update_rejected").value == 1
    [first, _] = client.protocol.stream_started()
    assert dict(first.initial_resource_versions) == {"a": "1"}


def test_eds_names_follow_the_clusters_as_differences() -> None:
    client, applier, _, _ = started()
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = ["backend", "api"]
    ack, eds = client.handle(response(CLUSTER, "n1", [("backend", "1"), ("api", "1")]))
    assert ack.type_url == CLUSTER
    assert eds.type_url == CLUSTER_LOAD_ASSIGNMENT and eds.response_nonce == ""
    assert list(eds.resource_names_subscribe) == ["api", "backend"]
    client.handle(response(CLUSTER_LOAD_ASSIGNMENT, "n2", [("api", "e1"), ("backend", "e1")]))
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = ["backend", "web"]
    _ack, change = client.handle(response(CLUSTER, "n3", [("web", "1")], removed=["api"]))
    assert list(change.resource_names_subscribe) == ["web"]
    assert list(change.resource_names_unsubscribe) == ["api"]
    assert change.response_nonce == ""
    assert client.protocol.subscriptions[CLUSTER_LOAD_ASSIGNMENT].held == {"backend": "e1"}
    # Losing every name is an unsubscribe, never an empty (wildcard) subscription.
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = []
    _ack, gone = client.handle(response(CLUSTER, "n4", removed=["backend", "web"]))
    assert list(gone.resource_names_unsubscribe) == ["backend", "web"]
    assert list(gone.resource_names_subscribe) == []
    # Same interest after the next update: only the ACK goes out.
    assert len(client.handle(response(CLUSTER, "n5", [("x", "1")]))) == 1


def test_no_named_subscription_is_sent_before_a_name_is_wanted() -> None:
    client, _, _, _ = started()
    assert client.protocol.set_names(ROUTE_CONFIGURATION, []) is None
    [ack] = client.handle(response(LISTENER, "n1", [("l", "1")]))
    assert ack.type_url == LISTENER


def test_rds_names_requested_after_lds() -> None:
    client, applier, _, _ = started()
    applier.wanted[ROUTE_CONFIGURATION] = ["local_route"]
    _ack, rds = client.handle(response(LISTENER, "n1", [("l", "1")]))
    assert rds.type_url == ROUTE_CONFIGURATION
    assert list(rds.resource_names_subscribe) == ["local_route"]


def test_a_new_stream_resubscribes_with_the_versions_held() -> None:
    client, applier, _, _ = started()
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = ["a", "b"]
    client.handle(response(CLUSTER, "n1", [("a", "c1"), ("b", "c1")]))
    client.handle(response(CLUSTER_LOAD_ASSIGNMENT, "n2", [("a", "e1"), ("b", "e1")]))
    client.handle(response(CLUSTER_LOAD_ASSIGNMENT, "n3", removed=["b"]))
    client.handle(response(LISTENER, "n4", [("l", "l1")]))
    requests = client.protocol.stream_started()
    assert [r.type_url for r in requests] == [CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER]
    cds, eds, lds = requests
    assert list(cds.resource_names_subscribe) == []
    assert dict(cds.initial_resource_versions) == {"a": "c1", "b": "c1"}
    # A removed named resource stays subscribed, with no version to offer (as Envoy).
    assert list(eds.resource_names_subscribe) == ["a", "b"]
    assert dict(eds.initial_resource_versions) == {"a": "e1"}
    assert dict(lds.initial_resource_versions) == {"l": "l1"}
    assert all(r.response_nonce == "" for r in requests)


def test_resources_not_subscribed_to_are_dropped_and_acked() -> None:
    client, applier, _, _ = started()
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = ["a"]
    client.handle(response(CLUSTER, "n1", [("a", "1")]))
    [ack] = client.handle(response(CLUSTER_LOAD_ASSIGNMENT, "n2", [("a", "e1"), ("zzz", "e1")],
                                   removed=["other"]))
    assert ack.response_nonce == "n2" and not ack.HasField("error_detail")
    assert applier.applied[-1] == (CLUSTER_LOAD_ASSIGNMENT, "", [("a", "e1")], [])
    assert client.protocol.subscriptions[CLUSTER_LOAD_ASSIGNMENT].held == {"a": "e1"}


def test_heartbeats_are_acked_without_applying_anything() -> None:
    client, applier, _, _ = started()
    client.handle(response(CLUSTER, "n1", [("a", "1")]))
    heartbeat = discovery_pb2.DeltaDiscoveryResponse(
        type_url=CLUSTER, nonce="n2", resources=[discovery_pb2.Resource(name="a", version="1")])
    [ack] = client.handle(heartbeat)
    assert ack.response_nonce == "n2" and not ack.HasField("error_detail")
    assert applier.applied[-1] == (CLUSTER, "", [], [])


def bad_response(**resource: Any) -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse(
        type_url=CLUSTER, nonce="n2", resources=[discovery_pb2.Resource(**resource)])


def test_malformed_responses_are_nacked_and_change_nothing() -> None:
    cases = [
        (response(CLUSTER, "n2", [("a", "2"), ("a", "3")]),
         "duplicate name a found among added/updated resources"),
        (response(CLUSTER, "n2", [("a", "2")], removed=["a"]),
         "duplicate name a found in the union of added+removed resources"),
        (bad_response(name="a", version="2", resource=body(LISTENER)),
         f"resources[0]: type URL {LISTENER} embedded in an individual Any does not match "
         f"the message-wide type URL {CLUSTER}"),
        (bad_response(name="a", version="2", resource=body(CLUSTER),
                      ttl=duration_pb2.Duration(seconds=5)),
         "resources[0]: field 'ttl': resource TTLs are not supported"),
        (bad_response(name="a", version="2"),
         "resources[0]: field 'resource' is required (a heartbeat repeats the version held; "
         "'a' is not held at '2')"),
        (discovery_pb2.DeltaDiscoveryResponse(type_url=CLUSTER, nonce="n2",
                                              removed_resource_names=[{"name": "a"}]),
         "removed_resource_names (xdstp:// names) is not supported"),
    ]
    for malformed, message in cases:
        client, applier, _, _ = started()
        client.handle(response(CLUSTER, "n1", [("a", "1")]))
        [nack] = client.handle(malformed)
        assert nack.response_nonce == "n2"
        assert nack.error_detail.message == message
        assert len(applier.applied) == 1
        assert client.protocol.subscriptions[CLUSTER].held == {"a": "1"}


def test_responses_for_types_not_requested_are_ignored() -> None:
    client, applier, _, _ = started()
    assert client.handle(response(ROUTE_CONFIGURATION, "n1", [("r", "1")])) == []
    assert applier.applied == []


def test_unexpected_errors_are_nacked_not_fatal() -> None:
    client, applier, _, _ = started()

    def broken(*_args: Any) -> None:
        raise KeyError("bug")

    applier.apply_delta = broken  # type: ignore[method-assign]
    [nack] = client.handle(response(CLUSTER, "n1", [("a", "1")]))
    assert nack.error_detail.message.startswith("internal error")
    assert client.protocol.subscriptions[CLUSTER].held == {}


def test_resource_errors_are_logged_and_the_response_applied(
        caplog: pytest.LogCaptureFixture) -> None:
    client, applier, _, _ = started()
    reported = response(CLUSTER, "n1", [("a", "1")])
    reported.resource_errors.add(resource_name={"name": "b"},
                                 error_detail={"code": 5, "message": "no such cluster"})
    [ack] = client.handle(reported)
    assert not ack.HasField("error_detail")
    assert applier.applied == [(CLUSTER, "", [("a", "1")], [])]
    assert "'b': no such cluster" in caplog.text
