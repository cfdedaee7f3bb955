from __future__ import annotations

import tracemalloc

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.cache import (
    DEFAULT_GROUP,
    CachedResource,
    Overlay,
    ResourceCache,
    ResponseEncoder,
    SnapshotCache,
    group_for,
)
from protos.loader import parse_any_resource
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import cluster, endpoints, listener, route, snapshot


def message(obj):
    return parse_any_resource(obj)


def clusters(*names: str, timeout: str = "1s"):
    return {name: message(cluster(name, timeout)) for name in names}


def node(node_id: str = "n", node_cluster: str = "") -> base_pb2.Node:
    return base_pb2.Node(id=node_id, cluster=node_cluster)


def decoded_names(body: bytes) -> list[str]:
    from envoy.config.cluster.v3 import cluster_pb2
    response = discovery_pb2.DiscoveryResponse.FromString(body)
    return sorted(cluster_pb2.Cluster.FromString(item.value).name for item in response.resources)


def test_resource_versions_follow_content_and_type_versions_are_independent():
    first = snapshot(cluster("a"), endpoints("a", 1), route("r", "a"))
    second = snapshot(cluster("a"), endpoints("a", 1), route("r", "a", "a"))
    assert first.of_type(CLUSTER).version == second.of_type(CLUSTER).version
    assert (first.of_type(CLUSTER).resources["a"].version
            == second.of_type(CLUSTER).resources["a"].version)
    assert first.of_type(ROUTE_CONFIGURATION).version != second.of_type(
        ROUTE_CONFIGURATION).version
    assert first.version != second.version


def test_a_response_is_the_shared_chunk_plus_the_nonce():
    typed = snapshot(cluster("a"), cluster("b")).of_type(CLUSTER)
    encoder = ResponseEncoder()
    one = encoder.encode(CLUSTER, typed.version, typed, "1")
    chunk = typed.chunks()[0]
    two = encoder.encode(CLUSTER, typed.version, typed, "2" * 200)
    assert typed.chunks()[0] is chunk  # built once per set, whatever the number of clients
    parsed = discovery_pb2.DiscoveryResponse.FromString(two)
    assert parsed.nonce == "2" * 200 and parsed.version_info == typed.version
    assert parsed.type_url == CLUSTER
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


def test_a_named_selection_is_computed_once_per_set_and_names_its_content():
    current = snapshot(cluster("a"), cluster("b"), cluster("c"))
    first = current.select(CLUSTER, frozenset({"c", "a", "missing"}))
    assert [resource.name for resource in first] == ["a", "c"]
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


# ---- the shared cache: resources shared by views, views of their own --------------------------

def test_a_change_to_one_shared_resource_serialises_it_once_for_every_view():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters(*(f"c{index}" for index in range(50))))
    inbound = {LISTENER: {"inbound": message(listener("inbound", "main", 15006))}}
    for index in range(100):
        cache.set_view(f"workload-{index}", own=inbound)
    assert cache.serialised == 50 + 100
    for index in range(100):  # a source publishing again what it holds: nothing to pack
        cache.set_view(f"workload-{index}", own=inbound)
    before = cache.serialised
    assert before == 150
    cache.put_resources(CLUSTER, clusters("c7", timeout="3s"))
    assert cache.serialised == before + 1
    versions = {cache.views[f"workload-{index}"].of_type(CLUSTER).get("c7").version
                for index in range(100)}
    assert len(versions) == 1  # one CachedResource, referenced by all 100 views
    # The same content again (a file parsed again, a compiler run again) changes nothing.
    generation = cache.generation
    views = dict(cache.views)
    cache.put_resources(CLUSTER, clusters("c7", timeout="3s"))
    assert cache.generation == generation + 1 and dict(cache.views) == views
    assert all(cache.views[key] is views[key] for key in views)


def test_a_view_update_touches_only_that_view_and_wakes_only_its_streams():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters("shared"))
    cache.set_view("a", own={CLUSTER: clusters("own-a")})
    cache.set_view("b", own={CLUSTER: clusters("own-b")})
    woken: list[str] = []
    for name in ("a", "b", "other"):  # "other" has no view: it gets the default view
        cache.subscribe(node(name), lambda name=name: woken.append(name))
    view_b, default = cache.views["b"], cache.views[DEFAULT_GROUP]
    cache.set_view("a", own={CLUSTER: clusters("own-a", timeout="5s")})
    assert woken == ["a"]
    assert cache.views["b"] is view_b and cache.views[DEFAULT_GROUP] is default
    woken.clear()
    cache.put_resources(CLUSTER, clusters("shared", timeout="2s"))  # seen by every view
    assert sorted(woken) == ["a", "b", "other"]


def test_a_node_moves_to_its_view_when_it_appears_and_back_when_it_goes():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters("shared"))
    woken: list[int] = []
    cache.subscribe(node("web-1", "web"), lambda: woken.append(1))
    assert sorted(cache.view_for(node("web-1", "web")).of_type(CLUSTER).names()) == ["shared"]
    cache.set_view("web", own={CLUSTER: clusters("web-only")})
    assert woken == [1]
    assert sorted(cache.view_for(node("web-1", "web")).of_type(CLUSTER).names()) == [
        "shared", "web-only"]
    cache.set_view("unrelated", own={CLUSTER: clusters("x")})
    assert woken == [1]
    cache.remove_view("web")
    assert woken == [1, 1]
    assert sorted(cache.view_for(node("web-1", "web")).of_type(CLUSTER).names()) == ["shared"]


def test_own_resources_replace_shared_ones_and_the_response_holds_each_name_once():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters("a", "b", "c"))
    cache.set_view("g", own={CLUSTER: clusters("b", timeout="7s") | clusters("d")})
    typed = cache.views["g"].of_type(CLUSTER)
    assert isinstance(typed, Overlay) and [item.name for item in typed] == ["a", "b", "c", "d"]
    assert typed.get("b").version != cache.shared(CLUSTER).get("b").version
    body = ResponseEncoder().encode(CLUSTER, typed.version, typed, "1")
    assert decoded_names(body) == ["a", "b", "c", "d"]
    assert [item.name for item in typed.select(frozenset({"b", "c", "x"}))] == ["b", "c"]
    assert typed.select(frozenset({"b"})).get("b") is typed.get("b")


def test_a_view_may_see_only_some_shared_names():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters("a", "b", "c"))
    cache.set_view("scoped", own={LISTENER: {"l": message(listener("l", "r"))}},
                   shared={CLUSTER: ["a", "c"]})
    woken: list[int] = []
    cache.subscribe(node("scoped"), lambda: woken.append(1))
    assert sorted(cache.views["scoped"].of_type(CLUSTER).names()) == ["a", "c"]
    cache.put_resources(CLUSTER, clusters("b", timeout="9s"))  # not in its scope
    assert woken == []
    cache.put_resources(CLUSTER, clusters("c", timeout="9s"))
    assert woken == [1]


def test_a_transaction_is_one_commit():
    cache = ResourceCache()
    woken: list[int] = []
    cache.subscribe(node("g"), lambda: woken.append(1))
    with cache.transaction():
        cache.put_resources(CLUSTER, clusters("a"))
        cache.put_resources(CLUSTER_LOAD_ASSIGNMENT, {"a": message(endpoints("a", 1))})
        cache.set_view("g", own={CLUSTER: clusters("b")})
        assert "g" not in cache.views  # nothing visible before the end
    assert woken == [1] and sorted(cache.views["g"].of_type(CLUSTER).names()) == ["a", "b"]


def test_changes_between_overlays_are_found_from_their_parts():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters(*(f"c{index}" for index in range(20))))
    cache.set_view("g", own={CLUSTER: clusters("own")})
    old = cache.views["g"].of_type(CLUSTER)
    cache.put_resources(CLUSTER, clusters("c3", timeout="4s"))
    cache.delete_resources(CLUSTER, ["c4"])
    cache.set_view("g", own={CLUSTER: clusters("own", timeout="4s")})
    new = cache.views["g"].of_type(CLUSTER)
    assert new.changed_since(old) == {"c3", "c4", "own"}


def test_resources_packed_elsewhere_are_taken_as_they_are():
    cache = ResourceCache()
    packed = CachedResource.of(CLUSTER, "a", message(cluster("a")))
    cache.put_resources(CLUSTER, {"a": packed})
    assert cache.shared(CLUSTER).get("a") is packed and cache.serialised == 0
    again = CachedResource.of_bytes(CLUSTER, "a", packed.value)
    cache.put_resources(CLUSTER, {"a": again})
    assert cache.shared(CLUSTER).get("a") is packed  # same bytes: the held one stays


def _bytes_per_view(shared_size: int, views: int = 200) -> float:
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters(*(f"c{index}" for index in range(shared_size))))
    cache.put_resources(CLUSTER_LOAD_ASSIGNMENT, {
        f"c{index}": message(endpoints(f"c{index}", 1)) for index in range(shared_size)})
    own = [{LISTENER: {"inbound": message(listener("inbound", "main", 15006 + index))},
            CLUSTER: clusters("inbound")} for index in range(views)]
    encoder = ResponseEncoder()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(views):
            cache.set_view(f"w{index}", own=own[index])
            typed = cache.views[f"w{index}"].of_type(CLUSTER)
            encoder.encode(CLUSTER, typed.version, typed, "1")  # answered, then dropped
            typed.select(frozenset(f"c{name}" for name in range(shared_size)))
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (after - before) / views


def test_memory_per_view_does_not_grow_with_the_shared_set():
    small, large = _bytes_per_view(20), _bytes_per_view(400)
    assert large < small * 1.5 + 2048, (small, large)
    assert large < 40_000  # a few KiB: its own resources and references, no copy of 400


def test_a_replica_fed_the_commits_holds_the_same_views_and_versions():
    from controlplane.cache import replication

    origin = ResourceCache()
    origin.put_resources(CLUSTER, clusters("a", "b"))
    origin.set_view("g", own={CLUSTER: clusters("own")}, shared={CLUSTER: ["a"]})
    replica = ResourceCache()
    replication.apply(replica, replication.encode(origin.state()))
    origin.listen(lambda committed: replication.apply(replica, replication.encode(committed)))
    assert {key: view.version for key, view in replica.views.items()} == {
        key: view.version for key, view in origin.views.items()}
    woken: list[int] = []
    replica.subscribe(node("g"), lambda: woken.append(1))
    origin.put_resources(CLUSTER, clusters("b", timeout="5s"))  # outside g's scope
    origin.put_resources(CLUSTER, clusters("a", timeout="5s"))
    origin.remove_view("g")
    assert woken == [1, 1] and "g" not in replica.views
    assert replica.views[DEFAULT_GROUP].version == origin.views[DEFAULT_GROUP].version
    assert replica.serialised == 0  # bytes travel as they are


def test_a_transaction_that_fails_changes_nothing():
    cache = ResourceCache()
    cache.put_resources(CLUSTER, clusters("a"))
    views = dict(cache.views)
    woken: list[int] = []
    cache.subscribe(node("g"), lambda: woken.append(1))
    try:
        with cache.transaction():
            cache.put_resources(CLUSTER, clusters("a", timeout="9s") | clusters("b"))
            cache.set_view("g", own={CLUSTER: clusters("own")})
            raise ValueError("the writer found a problem")
    except ValueError:
        pass
    assert dict(cache.views) == views and woken == []
    assert sorted(cache.shared(CLUSTER).names()) == ["a"]
    cache.put_resources(CLUSTER, clusters("c"))  # and the next change goes through alone
    assert sorted(cache.views[DEFAULT_GROUP].of_type(CLUSTER).names()) == ["a", "c"]
