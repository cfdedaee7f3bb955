from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.cache import DEFAULT_GROUP, ResponseEncoder, SnapshotCache, group_for
from protos.registry import CLUSTER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import cluster, endpoints, route, snapshot


def test_resource_versions_follow_content_and_type_versions_are_independent():
    first = snapshot(cluster("a"), endpoints("a", 1), route("r", "a"))
    second = snapshot(cluster("a"), endpoints("a", 1), route("r", "a", "a"))
    assert first.of_type(CLUSTER).version == second.of_type(CLUSTER).version
    assert (first.of_type(CLUSTER).resources["a"].version
            == second.of_type(CLUSTER).resources["a"].version)
    assert first.of_type(ROUTE_CONFIGURATION).version != second.of_type(
        ROUTE_CONFIGURATION).version
    assert first.version != second.version


def test_encoded_response_is_shared_and_only_the_nonce_differs():
    typed = snapshot(cluster("a"), cluster("b")).of_type(CLUSTER)
    encoder = ResponseEncoder()
    one = encoder.encode(CLUSTER, typed.version, typed.ordered, typed.version, "1")
    two = encoder.encode(CLUSTER, typed.version, typed.ordered, typed.version, "2" * 200)
    assert encoder.encoded == 1
    parsed = discovery_pb2.DiscoveryResponse.FromString(two)
    assert parsed.nonce == "2" * 200 and parsed.version_info == typed.version
    assert [item.type_url for item in parsed.resources] == [CLUSTER, CLUSTER]
    assert discovery_pb2.DiscoveryResponse.FromString(one).nonce == "1"


def test_node_group_is_chosen_by_node_id_then_cluster():
    groups = ["", "edge", "node-7"]
    assert group_for(base_pb2.Node(id="node-7", cluster="edge"), groups) == "node-7"
    assert group_for(base_pb2.Node(id="x", cluster="edge"), groups) == "edge"
    assert group_for(base_pb2.Node(id="x", cluster="other"), groups) == DEFAULT_GROUP


def test_watchers_hear_every_change_until_cancelled():
    cache = SnapshotCache()
    heard: list[int] = []
    cancel = cache.watch(lambda: heard.append(cache.generation))
    cache.set_snapshots({DEFAULT_GROUP: snapshot(cluster("a"))})
    cancel()
    cache.set_snapshots({DEFAULT_GROUP: snapshot(cluster("b"))})
    assert heard == [1] and cache.watcher_count == 0


def test_a_named_selection_is_computed_once_per_snapshot_and_names_its_content():
    current = snapshot(cluster("a"), cluster("b"), cluster("c"))
    first = current.select(CLUSTER, frozenset({"c", "a", "missing"}))
    assert [resource.name for resource in first.resources] == ["a", "c"]
    assert current.select(CLUSTER, frozenset({"a", "c", "missing"})) is first
    assert snapshot(cluster("a"), cluster("c")).select(CLUSTER, frozenset({"a", "c"})).key == (
        first.key)
    assert snapshot(cluster("a", "3s"), cluster("c")).select(
        CLUSTER, frozenset({"a", "c"})).key != first.key


def test_observer_hands_actions_and_closed_streams_to_hooks():
    from controlplane.observe import Observer
    from controlplane.protocol.sotw import SotwStream
    from tests.unit.controlplane.builders import request

    seen: list[tuple[str, object]] = []

    class Hook:
        def record(self, stream_id, node_id, actions):
            seen.extend((node_id, type(action).__name__) for action in actions)

        def stream_closed(self, stream_id):
            seen.append(("closed", stream_id))

    cache = SnapshotCache()
    cache.set_snapshots({DEFAULT_GROUP: snapshot(cluster("a"), endpoints("a", 1))})
    observer = Observer(cache, hooks=(Hook(),))
    stream = SotwStream(cache.snapshot_for)
    stream_id = observer.opened(stream, "ADS", "peer")
    observer.record(stream_id, stream.receive(request(CLUSTER, node_id="n"), 0.0))
    observer.closed(stream_id)
    assert ("n", "Push") in seen and seen[-1] == ("closed", stream_id)
    assert observer.pushes == {"cluster": 1} and not observer.streams


def test_changed_since_names_added_removed_and_changed_once_per_pair():
    old = snapshot(cluster("a"), cluster("b"), cluster("c")).of_type(CLUSTER)
    new = snapshot(cluster("a"), cluster("b", "9s"), cluster("d")).of_type(CLUSTER)
    changed = new.changed_since(old)
    assert changed == {"b", "c", "d"}
    assert new.changed_since(old) is changed


def test_delta_responses_are_memoised_and_parse():
    typed = snapshot(cluster("a"), cluster("b")).of_type(CLUSTER)
    encoder = ResponseEncoder()
    first = encoder.encode_delta(CLUSTER, typed.version, typed.ordered, ("gone",), "1")
    second = encoder.encode_delta(CLUSTER, typed.version, typed.ordered, ("gone",), "2")
    assert encoder.encoded == 1
    parsed = discovery_pb2.DeltaDiscoveryResponse.FromString(second)
    assert [item.name for item in parsed.resources] == ["a", "b"]
    assert list(parsed.removed_resources) == ["gone"] and parsed.nonce == "2"
    assert discovery_pb2.DeltaDiscoveryResponse.FromString(first).nonce == "1"
