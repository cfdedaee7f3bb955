"""Property test for delta xDS: a fake delta Envoy through random snapshot sequences with late
ACKs. Checked: nonces never reused; never a route naming a cluster the client lacks; after the
exchange settles the client holds exactly what it is subscribed to, and the server is silent."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from controlplane.cache import Snapshot
from controlplane.protocol.delta import DeltaStream
from controlplane.protocol.events import DeltaPush
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import Holder
from tests.unit.controlplane.test_delta import delta, pushes
from tests.unit.controlplane.test_sotw_properties import routed_clusters, snapshots

DEPENDENT = {CLUSTER: CLUSTER_LOAD_ASSIGNMENT, LISTENER: ROUTE_CONFIGURATION}


class FakeDeltaEnvoy:
    def __init__(self, stream: DeltaStream) -> None:
        self.stream = stream
        self.held: dict[str, dict[str, str]] = {}
        self.routes: dict[str, bytes] = {}
        self.subscribed: dict[str, set[str]] = {}
        self.nonces: set[str] = set()
        self.inbox: deque[DeltaPush] = deque()

    def send(self, request: object) -> None:
        self.inbox.extend(pushes(self.stream.receive(request, 0)))  # type: ignore[arg-type]

    def start(self) -> None:
        self.send(delta(CLUSTER))
        self.send(delta(LISTENER))

    def process_one(self) -> None:
        push = self.inbox.popleft()
        assert push.nonce not in self.nonces, "nonce reused"
        self.nonces.add(push.nonce)
        held = self.held.setdefault(push.type_url, {})
        for resource in push.resources:
            held[resource.name] = resource.version
            if push.type_url == ROUTE_CONFIGURATION:
                self.routes[resource.name] = resource.packed.value
        for name in push.removed:
            held.pop(name, None)
            if push.type_url == ROUTE_CONFIGURATION:
                self.routes.pop(name, None)
        self.check_routes_have_clusters()
        self.send(delta(push.type_url, nonce=push.nonce))
        dependent = DEPENDENT.get(push.type_url)
        if dependent is not None:
            self.update_interest(dependent)

    def wanted(self, type_url: str) -> set[str]:
        if type_url == CLUSTER_LOAD_ASSIGNMENT:
            return set(self.held.get(CLUSTER, {}))
        return {"main"} if self.held.get(LISTENER) else set()

    def update_interest(self, type_url: str) -> None:
        current = self.subscribed.setdefault(type_url, set())
        wanted = self.wanted(type_url)
        added, dropped = wanted - current, current - wanted
        if added or dropped:
            self.subscribed[type_url] = wanted
            for name in dropped:
                self.held.get(type_url, {}).pop(name, None)
                if type_url == ROUTE_CONFIGURATION:
                    self.routes.pop(name, None)
            self.send(delta(type_url, tuple(sorted(added)), tuple(sorted(dropped))))

    def check_routes_have_clusters(self) -> None:
        clusters = set(self.held.get(CLUSTER, {}))
        for name, value in self.routes.items():
            missing = routed_clusters(value) - clusters
            assert not missing, f"route {name} names {missing}, which the client does not have"

    def settle(self) -> None:
        for _ in range(300):
            if not self.inbox:
                return
            self.process_one()
        raise AssertionError("the exchange never settles")

    def holds(self, current: Snapshot) -> bool:
        for type_url in (CLUSTER, LISTENER, CLUSTER_LOAD_ASSIGNMENT, ROUTE_CONFIGURATION):
            available = current.of_type(type_url).resources
            names = set(available) if type_url in (CLUSTER, LISTENER) else (
                self.subscribed.get(type_url, set()) & set(available))
            expected = {name: available[name].version for name in names}
            if self.held.get(type_url, {}) != expected:
                return False
        return True


@settings(max_examples=60, deadline=None)
@given(first=snapshots, changes=st.lists(st.tuples(snapshots, st.integers(0, 6)), max_size=5))
def test_random_changes_converge_without_dangling_routes(first, changes):
    holder = Holder(first)
    client = FakeDeltaEnvoy(DeltaStream(holder))
    client.start()
    client.settle()
    for current, delivered_before_next in changes:
        holder.current = current
        client.inbox.extend(pushes(client.stream.snapshot_changed(0)))
        for _ in range(min(delivered_before_next, len(client.inbox))):
            client.process_one()
    client.settle()
    assert client.holds(holder.current)
    assert pushes(client.stream.snapshot_changed(0)) == []
