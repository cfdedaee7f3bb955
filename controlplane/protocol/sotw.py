"""State-of-the-world xDS subscription state for one gRPC stream, sans-I/O.

Rules come from the xDS protocol document (envoy/api/xds_protocol.rst):
- the node is taken from the first request of the stream ("Only the first request on a stream
  is guaranteed to carry the node identifier");
- every response carries a fresh nonce; a request whose response_nonce is not the latest one
  sent for its type is stale and ignored ("ACK and NACK semantics", "Resource updates");
- an ACK (matching nonce, no error_detail) records the version; nothing is sent again until
  something the client subscribed to changes; a NACK (error_detail) is recorded and the refused
  version is not resent: the next change is delivered;
- an empty resource_names list on the first request of a type is a (legacy) wildcard, `*` is an
  explicit wildcard ("How the client specifies what resources to return");
- Listener and Cluster responses always carry the full subscribed set; for the other types a
  resource is answered as soon as it exists, never held back for other names;
- pushes go clusters -> endpoints -> listeners -> routes, and clusters that disappeared are kept
  in CDS responses until the listeners/routes naming them were replaced ("Eventual consistency
  considerations"); secrets go first because warming clusters and listeners wait for them;
- after a Cluster/Listener push, the next EDS/RDS request is answered even when unchanged: the
  client is warming the new cluster/listener and waits for it ("Resource warming").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from controlplane.cache import CachedResource, ResourceSet, Snapshot, TypeContent, set_version
from controlplane.protocol.common import identify
from controlplane.protocol.events import (
    Acked,
    Action,
    Nacked,
    NackRecord,
    Push,
    StaleNonceIgnored,
    Subscribed,
)
from controlplane.protocol.health import health_report
from controlplane.protocol.requests import requested_names, shared_names
from controlplane.resources import BY_TYPE_URL, CLUSTER, LISTENER, PUSH_ORDER, ROUTE, WARMED_BY

WILDCARD = "*"
ROUTING_TYPES = (LISTENER.type_url, ROUTE.type_url)


@dataclass(frozen=True)
class Desired:
    """What a subscription should hold now: version_info, resources, their content key."""

    version: str
    resources: TypeContent  # shared with the view (and other streams), never copied
    key: str


def _explicit(requested: frozenset[str]) -> frozenset[str]:
    """The names of a request without the wildcard, shared across streams."""
    return shared_names(requested - {WILDCARD}) if WILDCARD in requested else requested


@dataclass
class Subscription:
    """One type on one stream: what the client asked for and what it was last sent."""

    type_url: str
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    nonce: str = ""  # of the latest response
    sent: TypeContent | None = None  # shared with other streams, never copied
    sent_key: str = ""  # content key of `sent`
    sent_version: str = ""
    sent_at: float = 0.0
    awaiting_reply: bool = False  # the latest response is neither ACKed nor NACKed yet
    acked_version: str = ""
    last_nack: NackRecord | None = None
    needs_warm_answer: bool = False

    def matches_sent(self, content_key: str) -> bool:
        return bool(self.nonce) and content_key == self.sent_key


class SotwStream:
    """Subscription state of one ADS (or single-type) stream.

    `resolve(node)` returns the snapshot for the node's group. Feed `receive(request, now)` with
    each DiscoveryRequest and call `snapshot_changed(now)` after the cache changes; both return
    the actions to perform, Push first among them in push order.
    """

    def __init__(self, resolve: Callable[[base_pb2.Node], Snapshot], *,
                 allowed_types: Iterable[str] | None = None, default_type: str = "",
                 partial_updates: bool = False) -> None:
        self._resolve = resolve
        # Changes of EDS/RDS/SDS resources carry only what changed (`_push_changes`); off, a
        # change resends every subscribed resource of the type.
        self.partial_updates = partial_updates
        self.allowed_types = frozenset(allowed_types or BY_TYPE_URL)
        self.default_type = default_type
        self.node: base_pb2.Node | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.retained_clusters: dict[str, CachedResource] = {}
        self._nonces = 0

    def __repr__(self) -> str:
        node = self.node.id if self.node else "?"
        return f"SotwStream(node={node!r}, types={sorted(self.subscriptions)})"

    # ---- inputs -------------------------------------------------------------------------------

    def receive(self, request: discovery_pb2.DiscoveryRequest, now: float) -> list[Action]:
        report = health_report(self, request)  # not a subscription: never answered
        if report is not None:
            return report
        actions, type_url = identify(self, request)
        subscription = self.subscriptions.get(type_url)
        if request.response_nonce and subscription is not None:
            # A nonce from another stream (a client resuming after a reconnect) is not stale:
            # with no subscription of this type yet, the request is a first request below.
            if request.response_nonce != subscription.nonce:
                return [*actions, StaleNonceIgnored(type_url, request.response_nonce)]
            return actions + self._reply(subscription, request, now)
        return actions + self._request(type_url, subscription, request, now)

    def _reply(self, subscription: Subscription, request: discovery_pb2.DiscoveryRequest,
               now: float) -> list[Action]:
        """An ACK or NACK of the latest response, possibly changing the names too."""
        actions = [self._record_reply(subscription, request, now)]
        changed = self._update_names(subscription, requested_names(request))
        if changed:
            actions.append(self._subscribed(subscription))
        if changed or subscription.needs_warm_answer:
            actions.extend(self._answer(subscription, now, force=True))
        actions.extend(self._release_retained_clusters(now))
        return actions

    def _request(self, type_url: str, subscription: Subscription | None,
                 request: discovery_pb2.DiscoveryRequest, now: float) -> list[Action]:
        """The first request of this type on the stream, or (no nonce) a change of names sent
        before the first response arrived; either way it is answered."""
        if subscription is None:
            subscription = self.subscriptions[type_url] = Subscription(type_url)
            self._set_initial_names(subscription, requested_names(request))
        else:
            self._update_names(subscription, requested_names(request))
        return [self._subscribed(subscription), *self._answer(subscription, now, force=True)]

    def snapshot_changed(self, now: float) -> list[Action]:
        snapshot = self.resolve_snapshot()
        clusters = snapshot.of_type(CLUSTER.type_url)
        self.retained_clusters = {name: resource for name, resource
                                  in self.retained_clusters.items() if name not in clusters}
        # Only the routing types decide whether removed clusters are kept (each type's own
        # answer below looks at its desired content once).
        routing_moves = any(self._differs(type_url, snapshot) for type_url in ROUTING_TYPES) \
            or self._routing_unacked()
        cds = self.subscriptions.get(CLUSTER.type_url)
        if cds is not None and cds.sent is not None and routing_moves:
            # Make before break: keep serving removed clusters until routes stop naming them.
            # (The names changed between two contents are computed once and shared.)
            sent = cds.sent
            self.retained_clusters.update(
                {name: resource for name in clusters.changed_since(sent)
                 if name not in clusters and (resource := sent.get(name)) is not None})
        actions: list[Action] = []
        for kind in PUSH_ORDER:
            subscription = self.subscriptions.get(kind.type_url)
            if subscription is not None:
                actions.extend(self._answer(subscription, now, force=False, snapshot=snapshot))
        return actions

    # ---- helpers ------------------------------------------------------------------------------

    def resolve_snapshot(self) -> Snapshot:
        """The snapshot this stream's node sees now."""
        return self._resolve(self.node or base_pb2.Node())

    def _record_reply(self, subscription: Subscription,
                      request: discovery_pb2.DiscoveryRequest, now: float) -> Action:
        subscription.awaiting_reply = False
        if request.HasField("error_detail"):
            refused = subscription.sent_version
            subscription.last_nack = NackRecord(refused, request.error_detail.message, now)
            return Nacked(subscription.type_url, refused, request.response_nonce,
                          request.error_detail.message)
        subscription.acked_version = request.version_info
        if subscription.last_nack is not None:
            subscription.last_nack = subscription.last_nack.acked(request.version_info, now)
        return Acked(subscription.type_url, request.version_info, request.response_nonce,
                     max(0.0, now - subscription.sent_at))

    def _set_initial_names(self, subscription: Subscription, requested: frozenset[str]) -> None:
        subscription.wildcard = not requested or WILDCARD in requested
        subscription.names = _explicit(requested)

    def _update_names(self, subscription: Subscription, requested: frozenset[str]) -> bool:
        """Apply a request's names (a shared set: requests.py); True when the subscription
        changed."""
        if not requested and subscription.wildcard and not subscription.names:
            return False  # a legacy wildcard stays a wildcard on later empty requests
        wildcard = WILDCARD in requested
        explicit = _explicit(requested)
        changed = wildcard != subscription.wildcard or (
            explicit is not subscription.names and explicit != subscription.names)
        if changed:
            subscription.wildcard, subscription.names = wildcard, explicit
        return changed

    def _subscribed(self, subscription: Subscription) -> Subscribed:
        return Subscribed(subscription.type_url, subscription.wildcard, subscription.names)

    def _desired(self, subscription: Subscription, snapshot: Snapshot) -> Desired:
        typed = snapshot.of_type(subscription.type_url)
        if subscription.wildcard:
            base = Desired(typed.version, typed, typed.key)
        else:
            selection = typed.select(subscription.names)
            base = Desired(typed.version, selection, selection.key)
        if subscription.type_url != CLUSTER.type_url or not self.retained_clusters:
            return base
        retained = {name: resource for name, resource in self.retained_clusters.items()
                    if subscription.wildcard or name in subscription.names}
        if not retained:
            return base
        chosen = {resource.name: resource for resource in base.resources}
        chosen.update(retained)
        resources = ResourceSet(subscription.type_url, chosen)
        return Desired(f"{base.version}+{set_version(retained.values())}", resources,
                       resources.key)

    def _differs(self, type_url: str, snapshot: Snapshot) -> bool:
        subscription = self.subscriptions.get(type_url)
        if subscription is None:
            return False
        return not subscription.matches_sent(self._desired(subscription, snapshot).key)

    def _answer(self, subscription: Subscription, now: float, *, force: bool,
                snapshot: Snapshot | None = None) -> list[Action]:
        desired = self._desired(subscription, snapshot or self.resolve_snapshot())
        full_set = BY_TYPE_URL[subscription.type_url].full_set
        if not force and subscription.matches_sent(desired.key):
            return []  # silence until something this client asked for changes
        if not desired.resources and not full_set and (force or not subscription.sent):
            # Named resources that do not exist yet: answered when they appear. (A full-set type
            # answers with the empty set: that tells the client its resources are gone.)
            return []
        if self.partial_updates and not force and not full_set and desired.resources \
                and subscription.sent is not None and not subscription.needs_warm_answer:
            return self._push_changes(subscription, desired, now)
        return [self._push(subscription, desired, now)]

    def _push_changes(self, subscription: Subscription, desired: Desired,
                      now: float) -> list[Action]:
        """Only what changed, for the types whose responses need not hold the state of the world
        (all but Listener and Cluster: xds_protocol.rst, "Grouping Resources into Responses";
        Envoy and gRPC keep the resources a response leaves out). An endpoint change then costs
        each client one small response instead of every endpoint set again. The client is
        then taken to hold `desired`. Names only removed are not sent (there is no removal in
        SotW for these types: the client drops them with what referred to them)."""
        sent = subscription.sent
        assert sent is not None
        # One set per (sent, desired) pair, shared by every stream making that move: its key
        # and encoded chunk are computed once (cache/content.py), and so is the response.
        present = desired.resources.changes_since(sent, desired.version)
        if not len(present):
            subscription.sent, subscription.sent_key = desired.resources, desired.key
            subscription.sent_version = desired.version
            return []
        push = self._push(subscription, desired, now)
        return [Push(push.type_url, push.version, push.nonce, present, push.content_key)]

    def _push(self, subscription: Subscription, desired: Desired, now: float) -> Push:
        self._nonces += 1
        nonce = str(self._nonces)
        subscription.nonce = nonce
        subscription.sent = desired.resources
        subscription.sent_key = desired.key
        subscription.sent_version = desired.version
        subscription.sent_at = now
        subscription.awaiting_reply = True
        subscription.needs_warm_answer = False
        for child, parent in WARMED_BY.items():
            if parent == subscription.type_url and child in self.subscriptions:
                self.subscriptions[child].needs_warm_answer = True
        return Push(subscription.type_url, desired.version, nonce, desired.resources, desired.key)

    def _routing_unacked(self) -> bool:
        return any(self.subscriptions[type_url].awaiting_reply
                   for type_url in ROUTING_TYPES if type_url in self.subscriptions)

    def _release_retained_clusters(self, now: float) -> list[Action]:
        """Once listeners and routes are acknowledged, drop the clusters kept for them."""
        if not self.retained_clusters or self._routing_unacked():
            return []
        self.retained_clusters = {}
        cds = self.subscriptions.get(CLUSTER.type_url)
        if cds is None:
            return []
        return self._answer(cds, now, force=False)
