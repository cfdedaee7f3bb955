"""Property test: a fake Envoy (the checks a real one would make) against the SotW state machine
through random sequences of snapshots, with ACKs arriving late and interleaved.

Checked at every step: nonces are never reused; the client never holds a route naming a
cluster it does not have (make before break); after the exchange settles, the client holds
exactly the current snapshot and the server stays silent.
"""

from __future__ import annotations

from collections import deque

import pytest
from envoy.config.route.v3 import route_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.cache import Snapshot
from controlplane.protocol.events import Push
from controlplane.protocol.sotw import SotwStream
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import (
    Holder,
    cluster,
    endpoints,
    listener,
    pushes,
    request,
    route,
    snapshot,
)

NAMES = ("a", "b", "c", "d")


def routed_clusters(resource_value: bytes) -> set[str]:
    config = route_pb2.RouteConfiguration.FromString(resource_value)
    return {item.route.cluster for host in config.virtual_hosts for item in host.routes}


class FakeEnvoy:
    """Applies responses like Envoy (full sets for CDS/LDS, per-name updates otherwise), then
    ACKs, asking EDS for its clusters' endpoints and RDS for its listeners' routes."""

    def __init__(self, stream: SotwStream) -> None:
        self.stream = stream
        self.held: dict[str, dict[str, Push]] = {}
        self.state: dict[str, dict[str, str]] = {}  # type -> name -> resource version
        self.routes: dict[str, bytes] = {}
        self.nonces: set[str] = set()
        self.inbox: deque[Push] = deque()

    def start(self) -> None:
        self.inbox.extend(pushes(self.stream.receive(request(CLUSTER, node_id="envoy"), 0)))
        self.inbox.extend(pushes(self.stream.receive(request(LISTENER), 0)))

    def process_one(self) -> None:
        push = self.inbox.popleft()
        assert push.nonce not in self.nonces, "nonce reused"
        self.nonces.add(push.nonce)
        held = self.state.setdefault(push.type_url, {})
        if push.type_url in (CLUSTER, LISTENER):
            held.clear()
        for resource in push.resources:
            held[resource.name] = resource.version
            if push.type_url == ROUTE_CONFIGURATION:
                self.routes[resource.name] = resource.packed.value
        self.check_routes_have_clusters()
        names = self.wanted(push.type_url)
        self.inbox.extend(pushes(self.stream.receive(request(
            push.type_url, names, nonce=push.nonce, version=push.version), 0)))
        self.subscribe_dependents(push.type_url)

    def wanted(self, type_url: str) -> tuple[str, ...]:
        if type_url == CLUSTER_LOAD_ASSIGNMENT:
            return tuple(sorted(self.state.get(CLUSTER, {})))
        if type_url == ROUTE_CONFIGURATION:
            return ("main",) if self.state.get(LISTENER) else ()
        return ()

    def subscribe_dependents(self, type_url: str) -> None:
        dependent = {CLUSTER: CLUSTER_LOAD_ASSIGNMENT, LISTENER: ROUTE_CONFIGURATION}.get(type_url)
        if dependent is None:
            return
        subscription = self.stream.subscriptions.get(dependent)
        names = self.wanted(dependent)
        if subscription is None and names:
            self.inbox.extend(pushes(self.stream.receive(request(dependent, names), 0)))
        elif subscription is not None and frozenset(names) != subscription.names:
            self.inbox.extend(pushes(self.stream.receive(request(
                dependent, names, nonce=subscription.nonce, version=subscription.sent_version),
                0)))

    def check_routes_have_clusters(self) -> None:
        clusters = set(self.state.get(CLUSTER, {}))
        for name, value in self.routes.items():
            missing = routed_clusters(value) - clusters
            assert not missing, f"route {name} names {missing}, which the client does not have"

    def settle(self) -> None:
        for _ in range(200):
            if not self.inbox:
                return
            self.process_one()
        raise AssertionError("the exchange never settles")

    def holds(self, current: Snapshot) -> bool:
        for type_url in (CLUSTER, LISTENER):
            expected = {name: item.version
                        for name, item in current.of_type(type_url).resources.items()}
            if self.state.get(type_url, {}) != expected:
                return False
        for type_url in (CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION):
            for name, item in current.of_type(type_url).resources.items():
                if self.state.get(type_url, {}).get(name) != item.version:
                    return False
        return True


def consistent_snapshot(clusters: frozenset[str], routed: frozenset[str], port: int) -> Snapshot:
    clusters = clusters | routed  # a valid snapshot: routes only name existing clusters
    resources = [cluster(name) for name in sorted(clusters)]
    resources += [endpoints(name, port) for name in sorted(clusters)]
    resources += [listener("http", "main"), route("main", *sorted(routed))]
    return snapshot(*resources)


snapshots = st.builds(consistent_snapshot, st.frozensets(st.sampled_from(NAMES)),
                      st.frozensets(st.sampled_from(NAMES), min_size=1),
                      st.integers(min_value=1, max_value=3))


@pytest.mark.parametrize("partial_updates", [False, True], ids=["full", "partial"])
@settings(max_examples=60, deadline=None)
@given(first=snapshots, changes=st.lists(st.tuples(snapshots, st.integers(0, 6)), max_size=5))
def test_random_changes_converge_without_dangling_routes(partial_updates, first, changes):
    holder = Holder(first)
    client = FakeEnvoy(SotwStream(holder, partial_updates=partial_updates))
    client.start()
    client.settle()
    for current, delivered_before_next in changes:
        holder.current = current
        client.inbox.extend(pushes(client.stream.snapshot_changed(0)))
        for _ in range(min(delivered_before_next, len(client.inbox))):
            client.process_one()  # some responses still in flight when the next change lands
    client.settle()
    assert client.holds(holder.current)
    assert pushes(client.stream.snapshot_changed(0)) == []
