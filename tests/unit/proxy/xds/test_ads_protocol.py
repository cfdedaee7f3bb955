"""ADS SotW client bookkeeping: subscriptions, ACK/NACK, interest changes, resumption."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from protos.errors import ConfigError
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from proxy.stats import Stats
from proxy.xds.client import AdsClient
from proxy.xds.protocol import AdsProtocol


def response(type_url: str, version: str, nonce: str) -> discovery_pb2.DiscoveryResponse:
    return discovery_pb2.DiscoveryResponse(type_url=type_url, version_info=version, nonce=nonce)


class FakeApplier:
    """Accepts everything except versions listed in `bad`; needs the names in `wanted`."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, str]] = []
        self.bad: set[str] = set()
        self.wanted: dict[str, list[str]] = {CLUSTER_LOAD_ASSIGNMENT: [],
                                             ROUTE_CONFIGURATION: []}

    def apply(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        if version in self.bad:
            raise ConfigError("must be greater than 0", field="connect_timeout",
                              resource="backend")
        self.applied.append((type_url, version))

    def wanted_names(self, type_url: str) -> Iterable[str]:
        return self.wanted.get(type_url, [])


def new_client(node_on_every_request: bool = False) -> tuple[AdsClient, FakeApplier, Stats]:
    protocol = AdsProtocol(base_pb2.Node(id="sidecar-1", cluster="web"),
                           node_on_every_request=node_on_every_request)
    protocol.subscribe_wildcard([CLUSTER, LISTENER])
    applier = FakeApplier()
    stats = Stats()
    return AdsClient("127.0.0.1:1", protocol, applier, stats), applier, stats


def test_each_new_stream_goes_to_the_next_control_plane() -> None:
    """Several endpoints in the ADS cluster (replicas): tried in turn, as Envoy's round robin
    picks a host per stream."""
    client, _, _ = new_client()
    assert [client.next_target() for _ in range(2)] == ["127.0.0.1:1"] * 2
    protocol = AdsProtocol(base_pb2.Node(id="sidecar-1", cluster="web"))
    several = AdsClient("127.0.0.1:1", protocol, FakeApplier(), Stats(),
                        targets=("127.0.0.1:1", "[::1]:2"))
    assert [several.next_target() for _ in range(3)] == ["127.0.0.1:1", "[::1]:2",
                                                          "127.0.0.1:1"]


def test_first_requests_are_wildcard_cds_then_lds_with_node_once() -> None:
    client, _, _ = new_client()
    requests = client.protocol.stream_started()
    assert [r.type_url for r in requests] == [CLUSTER, LISTENER]
    assert [list(r.resource_names) for r in requests] == [[], []]
    assert requests[0].node.id == "sidecar-1"
    assert not requests[1].HasField("node")  # set_node_on_first_message_only
    assert all(r.version_info == "" and r.response_nonce == "" for r in requests)
    client, _, _ = new_client(node_on_every_request=True)  # Envoy's default
    assert all(r.node.id == "sidecar-1" for r in client.protocol.stream_started())


def test_ack_carries_new_version_and_nonce() -> None:
    client, applier, stats = new_client()
    client.protocol.stream_started()
    [ack] = client.handle(response(CLUSTER, "v1", "n1"))
    assert (ack.type_url, ack.version_info, ack.response_nonce) == (CLUSTER, "v1", "n1")
    assert not ack.HasField("error_detail")
    assert applier.applied == [(CLUSTER, "v1")]
    assert stats.counter("cluster_manager.cds.update_success").value == 1


def test_nack_keeps_previous_version_and_names_the_field() -> None:
    client, applier, stats = new_client()
    client.protocol.stream_started()
    client.handle(response(CLUSTER, "v1", "n1"))
    applier.bad.add("v2")
    [nack] = client.handle(response(CLUSTER, "v2", "n2"))
    assert nack.version_info == "v1"
    assert nack.response_nonce == "n2"
    assert nack.error_detail.code == 3
    assert "connect_timeout" in nack.error_detail.message
    assert "backend" in nack.error_detail.message
    assert stats.counter("cluster_manager.cds.update_rejected").value == 1
    # A later good version is ACKed again.
    [ack] = client.handle(response(CLUSTER, "v3", "n3"))
    assert (ack.version_info, ack.response_nonce) == ("v3", "n3")
    assert not ack.HasField("error_detail")


def test_eds_subscription_follows_the_clusters() -> None:
    client, applier, _ = new_client()
    client.protocol.stream_started()
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = ["backend", "api"]
    ack, eds = client.handle(response(CLUSTER, "v1", "n1"))
    assert ack.type_url == CLUSTER
    assert eds.type_url == CLUSTER_LOAD_ASSIGNMENT
    assert list(eds.resource_names) == ["api", "backend"]
    assert (eds.version_info, eds.response_nonce) == ("", "")
    [eds_ack] = client.handle(response(CLUSTER_LOAD_ASSIGNMENT, "e1", "n2"))
    assert (eds_ack.version_info, eds_ack.response_nonce) == ("e1", "n2")
    assert list(eds_ack.resource_names) == ["api", "backend"]
    # Same interest after the next CDS update: only the ACK goes out.
    assert len(client.handle(response(CLUSTER, "v2", "n3"))) == 1


def test_rds_names_requested_after_lds() -> None:
    client, applier, _ = new_client()
    client.protocol.stream_started()
    applier.wanted[ROUTE_CONFIGURATION] = ["local_route"]
    _ack, rds = client.handle(response(LISTENER, "l1", "n1"))
    assert rds.type_url == ROUTE_CONFIGURATION
    assert list(rds.resource_names) == ["local_route"]


def test_reconnect_resumes_with_held_versions_and_no_nonce() -> None:
    client, applier, _ = new_client()
    client.protocol.stream_started()
    applier.wanted[CLUSTER_LOAD_ASSIGNMENT] = ["backend"]
    client.handle(response(CLUSTER, "v1", "n1"))
    client.handle(response(CLUSTER_LOAD_ASSIGNMENT, "e1", "n2"))
    requests = client.protocol.stream_started()
    assert [(r.type_url, r.version_info, r.response_nonce) for r in requests] == [
        (CLUSTER, "v1", ""), (CLUSTER_LOAD_ASSIGNMENT, "e1", ""), (LISTENER, "", "")]
    assert requests[0].node.id == "sidecar-1"


def test_responses_for_types_not_requested_are_ignored() -> None:
    client, applier, _ = new_client()
    client.protocol.stream_started()
    assert client.handle(response(ROUTE_CONFIGURATION, "r1", "n1")) == []
    assert applier.applied == []


def test_unexpected_errors_are_nacked_not_fatal() -> None:
    client, applier, _ = new_client()
    client.protocol.stream_started()

    def broken(*_args: Any) -> None:
        raise KeyError("bug")

    applier.apply = broken  # type: ignore[method-assign]
    [nack] = client.handle(response(CLUSTER, "v1", "n1"))
    assert nack.error_detail.message.startswith("internal error")
    assert nack.version_info == ""
