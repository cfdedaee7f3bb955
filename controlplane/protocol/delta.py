"""Incremental ("delta") xDS subscription state for one gRPC stream, sans-I/O.

Rules from the xDS protocol document (envoy/api/xds_protocol.rst, "Incremental xDS"):
- the node comes from the first request; each response has a fresh nonce; a reply whose nonce
  is the latest is an ACK, or a NACK with error_detail;
- subscription changes are honoured even when the nonce is stale ("should *not* be used to
  reject stale requests");
- wildcard: `*` in resource_names_subscribe, or (legacy) a first request naming nothing;
- `initial_resource_versions` says what a reconnecting client already holds: not resent;
- a name in resource_names_subscribe is (re)sent even if the client seems to have it; a
  subscribed name that does not exist is answered in removed_resources;
- unsubscribing needs no answer, except a name also covered by a wildcard: then it is sent
  again (still covered) or removed;
- only changed resources are sent; resources gone from the snapshot go in removed_resources.
  Pushes follow the SotW order (secrets, clusters, endpoints, listeners, routes), and cluster
  removals wait until listeners and routes were ACKed, as in sotw.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.cache import CachedResource, Snapshot, TypeContent
from controlplane.protocol.common import identify
from controlplane.protocol.events import (
    Acked,
    Action,
    DeltaPush,
    Nacked,
    NackRecord,
    StaleNonceIgnored,
    Subscribed,
)
from controlplane.protocol.health import health_report
from controlplane.protocol.known import KnownVersions
from controlplane.resources import BY_TYPE_URL, CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE
from controlplane.resources.cluster import eds_service_name_of_packed

WILDCARD = "*"
ROUTING_TYPES = (LISTENER.type_url, ROUTE.type_url)


@dataclass
class DeltaSubscription:
    """One type on one delta stream: subscribed names and what the client holds."""

    type_url: str
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    # name -> version the client holds; a reference to the content it is in line with, plus
    # the differences since (controlplane/protocol/known.py)
    known: KnownVersions = field(default_factory=KnownVersions)
    forced: set[str] = field(default_factory=set)  # answer these next, even if unchanged
    nonce: str = ""
    sent_version: str = ""
    sent_at: float = 0.0
    awaiting_reply: bool = False
    acked_version: str = ""
    last_nack: NackRecord | None = None
    # The type snapshot `known` fully matches (for the subscribed scope): the next plan only
    # looks at names that changed since, which every stream shares (TypeSnapshot.changed_since).
    synced: TypeContent | None = None


@dataclass(frozen=True)
class DeltaPlan:
    resources: tuple[CachedResource, ...]
    removed: tuple[str, ...]
    complete: bool = True  # False when removals were withheld (make before break)

    def __bool__(self) -> bool:
        return bool(self.resources or self.removed)


class DeltaStream:
    """Subscription state of one delta ADS (or single-type) stream; same shape as SotwStream:
    `receive(request, now)` and `snapshot_changed(now)` return actions."""

    def __init__(self, resolve: Callable[[base_pb2.Node], Snapshot], *,
                 allowed_types: Iterable[str] | None = None, default_type: str = "") -> None:
        self._resolve = resolve
        self.allowed_types = frozenset(allowed_types or BY_TYPE_URL)
        self.default_type = default_type
        self.node: base_pb2.Node | None = None
        self.subscriptions: dict[str, DeltaSubscription] = {}
        self.defer_cluster_removal = False
        self._nonces = 0

    def __repr__(self) -> str:
        node = self.node.id if self.node else "?"
        return f"DeltaStream(node={node!r}, types={sorted(self.subscriptions)})"

    def resolve_snapshot(self) -> Snapshot:
        return self._resolve(self.node or base_pb2.Node())

    # ---- inputs -------------------------------------------------------------------------------

    def receive(self, request: discovery_pb2.DeltaDiscoveryRequest, now: float) -> list[Action]:
        report = health_report(self, request)  # not a subscription: never answered
        if report is not None:
            return report
        actions, type_url = identify(self, request)
        subscription = self.subscriptions.get(type_url)
        first = subscription is None
        if subscription is None:
            subscription = self._open(type_url, request)
        elif request.response_nonce:
            actions.append(self._record_nonce(subscription, request, now))
        changed = self._apply_interest(subscription, request)
        if first:  # a reconnecting client already holds these versions: not resent
            subscription.forced -= {name for name, version in subscription.known.items()
                                    if self._current_version(type_url, name) == version}
        if changed or first:
            actions.append(Subscribed(type_url, subscription.wildcard,
                                      frozenset(subscription.names)))
        if first or subscription.forced:
            actions.extend(self._answer(subscription, now, always=first))
        actions.extend(self._release_cluster_removal(now))
        actions.extend(self._answer_warming_endpoints(now))
        return actions

    def snapshot_changed(self, now: float) -> list[Action]:
        snapshot = self.resolve_snapshot()
        routing_moves = any(self._plan(self.subscriptions[type_url], snapshot)
                            for type_url in ROUTING_TYPES if type_url in self.subscriptions)
        self.defer_cluster_removal = routing_moves or self._routing_unacked()
        actions: list[Action] = []
        for kind in PUSH_ORDER:
            subscription = self.subscriptions.get(kind.type_url)
            if subscription is not None:
                actions.extend(self._answer(subscription, now, snapshot=snapshot))
        return actions

    # ---- helpers ------------------------------------------------------------------------------

    def _open(self, type_url: str,
              request: discovery_pb2.DeltaDiscoveryRequest) -> DeltaSubscription:
        """The first request of a type: what the client holds, and a legacy wildcard when it
        names nothing at all."""
        subscription = self.subscriptions[type_url] = DeltaSubscription(type_url)
        subscription.known = KnownVersions(request.initial_resource_versions)
        subscription.wildcard = (not request.resource_names_subscribe
                                 and not request.resource_names_unsubscribe)
        return subscription

    def _record_nonce(self, subscription: DeltaSubscription,
                      request: discovery_pb2.DeltaDiscoveryRequest, now: float) -> Action:
        if request.response_nonce == subscription.nonce:
            return self._record_reply(subscription, request, now)
        return StaleNonceIgnored(subscription.type_url, request.response_nonce)

    def _current_version(self, type_url: str, name: str) -> str | None:
        resource = self.resolve_snapshot().of_type(type_url).get(name)
        return resource.version if resource is not None else None

    def _record_reply(self, subscription: DeltaSubscription,
                      request: discovery_pb2.DeltaDiscoveryRequest, now: float) -> Action:
        subscription.awaiting_reply = False
        if request.HasField("error_detail"):
            subscription.last_nack = NackRecord(subscription.sent_version,
                                                request.error_detail.message, now)
            return Nacked(subscription.type_url, subscription.sent_version,
                          request.response_nonce, request.error_detail.message)
        subscription.acked_version = subscription.sent_version
        if subscription.last_nack is not None:
            subscription.last_nack = subscription.last_nack.acked(subscription.sent_version, now)
        return Acked(subscription.type_url, subscription.sent_version, request.response_nonce,
                     max(0.0, now - subscription.sent_at))

    def _apply_interest(self, subscription: DeltaSubscription,
                        request: discovery_pb2.DeltaDiscoveryRequest) -> bool:
        changed = False
        for name in request.resource_names_subscribe:
            if name == WILDCARD:
                changed |= not subscription.wildcard
                subscription.wildcard = True
                subscription.synced = None  # everything not yet held is now in scope
            else:
                changed |= name not in subscription.names
                subscription.names.add(name)
                subscription.forced.add(name)
        for name in request.resource_names_unsubscribe:
            if name == WILDCARD:
                changed |= subscription.wildcard
                subscription.wildcard = False
                for held in list(subscription.known):
                    if held not in subscription.names:
                        del subscription.known[held]
            elif name in subscription.names:
                changed = True
                subscription.names.discard(name)
                if subscription.wildcard:
                    subscription.forced.add(name)  # still covered by the wildcard, or gone?
                else:
                    subscription.known.pop(name, None)
        return changed

    def _plan(self, subscription: DeltaSubscription, snapshot: Snapshot) -> DeltaPlan:
        typed = snapshot.of_type(subscription.type_url)
        if subscription.synced is None and not subscription.known:
            # A first sync, nothing held: the plan depends on the content and the scope alone,
            # and the streams of a mesh ask for the same scope: made once for all of them.
            key = ("first", subscription.wildcard, frozenset(subscription.names),
                   frozenset(subscription.forced))
            plan: DeltaPlan = typed.memoised(key, lambda: self._make_plan(subscription, typed))
            return plan
        return self._make_plan(subscription, typed)

    def _make_plan(self, subscription: DeltaSubscription, typed: TypeContent) -> DeltaPlan:
        send: list[CachedResource] = []
        removed: list[str] = []
        withheld = False
        # While listeners/routes move, removed clusters (and their endpoints) stay with the client.
        withhold = self.defer_cluster_removal and subscription.type_url in (
            CLUSTER.type_url, ENDPOINT.type_url)
        for name in sorted(self._candidates(subscription, typed)):
            resource = typed.get(name)
            if resource is not None:
                if (subscription.wildcard or name in subscription.names) and (
                        name in subscription.forced
                        or subscription.known.get(name) != resource.version):
                    send.append(resource)
            elif name in subscription.forced or name in subscription.known:
                if withhold and name in subscription.known:
                    withheld = True  # make before break: routes may still name it
                    continue
                removed.append(name)
        return DeltaPlan(tuple(send), tuple(removed), complete=not withheld)

    @staticmethod
    def _candidates(subscription: DeltaSubscription, typed: TypeContent) -> set[str]:
        """Names that may need sending or removing: with a synced subscription, only the names
        changed since (shared work); otherwise everything in scope."""
        if subscription.synced is not None:
            if subscription.synced.key == typed.key:
                return set(subscription.forced)
            return set(typed.changed_since(subscription.synced)) | subscription.forced
        candidates = set(subscription.names) | subscription.forced
        if subscription.wildcard:
            return candidates | set(typed.names()) | subscription.known.keys()
        return candidates | (subscription.known.keys() & subscription.names)

    def _answer(self, subscription: DeltaSubscription, now: float, *, always: bool = False,
                snapshot: Snapshot | None = None) -> list[Action]:
        snapshot = snapshot or self.resolve_snapshot()
        plan = self._plan(subscription, snapshot)
        subscription.forced.clear()
        subscription.synced = snapshot.of_type(subscription.type_url) if plan.complete else None
        if not plan and not always:
            return []
        if subscription.type_url == CLUSTER.type_url:
            self._warm_endpoints_of(plan.resources, subscription)
        if plan.complete:  # the client holds exactly its scope of this content: no copy
            subscription.known.rebase(self._scope(subscription, snapshot))
        else:  # (a rebase replaces all of it: no need to record each name first)
            for resource in plan.resources:
                subscription.known[resource.name] = resource.version
            for name in plan.removed:
                subscription.known.pop(name, None)
        self._nonces += 1
        subscription.nonce = str(self._nonces)
        subscription.sent_version = snapshot.of_type(subscription.type_url).version
        subscription.sent_at = now
        subscription.awaiting_reply = True
        return [DeltaPush(subscription.type_url, subscription.sent_version, subscription.nonce,
                          plan.resources, plan.removed)]

    @staticmethod
    def _scope(subscription: DeltaSubscription, snapshot: Snapshot) -> TypeContent:
        typed = snapshot.of_type(subscription.type_url)
        return typed if subscription.wildcard else typed.select(frozenset(subscription.names))

    def _answer_warming_endpoints(self, now: float) -> list[Action]:
        eds = self.subscriptions.get(ENDPOINT.type_url)
        return self._answer(eds, now) if eds is not None and eds.forced else []

    def _warm_endpoints_of(self, clusters: tuple[CachedResource, ...],
                           cds: DeltaSubscription) -> None:
        """An updated cluster is re-created and warms until it gets its endpoints, but Envoy's
        delta client does not re-subscribe (the name is already subscribed): resend them after
        the cluster (xds_protocol.rst, "Resource warming")."""
        eds = self.subscriptions.get(ENDPOINT.type_url)
        if eds is None:
            return
        for resource in clusters:
            if resource.name in cds.known:  # an update, not a new cluster
                service = eds_service_name_of_packed(resource.packed.value)
                if service is not None and service in eds.known:
                    eds.forced.add(service)

    def _routing_unacked(self) -> bool:
        return any(self.subscriptions[type_url].awaiting_reply
                   for type_url in ROUTING_TYPES if type_url in self.subscriptions)

    def _release_cluster_removal(self, now: float) -> list[Action]:
        if not self.defer_cluster_removal or self._routing_unacked():
            return []
        self.defer_cluster_removal = False
        cds = self.subscriptions.get(CLUSTER.type_url)
        return self._answer(cds, now) if cds is not None else []
