"""ADS state-of-the-world client bookkeeping, sans-I/O (xDS protocol doc:
api-docs/xds_protocol, "ACK/NACK and resource type instance version", "How the client
specifies what resources to return", "Resource warming").

Per resource type it keeps what we subscribe to (wildcard for LDS/CDS; names for RDS/EDS),
the last *accepted* version and the last nonce seen, and builds the DiscoveryRequests:
- the first request of a stream for each type carries the version we hold (so a reconnect
  resumes) and no nonce;
- an ACK carries the new version and the response's nonce;
- a NACK carries the previous accepted version, the response's nonce and an error_detail
  (google.rpc.Status INVALID_ARGUMENT with the ConfigError text naming resource and field);
- a change of interest (new RDS/EDS names) is a request with the current version and nonce;
- a health report (`health_report`, both protocols) is a request of Istio's type
  `type.googleapis.com/istio.v1.HealthInformation`, with an error_detail when the application is
  not ready (istio-agent's; controlplane/protocol/health.py): no subscription, never answered.
The adapter (proxy.xds.client) does the I/O and applies resources between `received` and
`accept` / `reject`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from protos.registry import (
    CLUSTER,
    CLUSTER_LOAD_ASSIGNMENT,
    LISTENER,
    ROUTE_CONFIGURATION,
    SECRET,
)

INVALID_ARGUMENT = 3  # google.rpc.Code
UNAVAILABLE = 14  # google.rpc.Code: the code of an unhealthy report
HEALTH_TYPE_URL = "type.googleapis.com/istio.v1.HealthInformation"
# Envoy subscribes in this order on a new ADS stream: CDS, EDS, LDS, RDS (xds_protocol,
# "eventual consistency considerations": make-before-break); SDS, named by the clusters and
# listeners, last.
SUBSCRIPTION_ORDER = (CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION, SECRET)
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})


@dataclass
class Interest:
    """What the SotW and the delta protocol both keep per resource type."""

    type_url: str
    wildcard: bool
    names: frozenset[str] = frozenset()  # named interest (RDS / EDS)
    nonce: str = ""  # last response nonce on the current stream
    sent_on_stream: bool = False
    received_once: bool = False
    last_error: str = ""

    @property
    def active(self) -> bool:
        return self.wildcard or bool(self.names)


@dataclass
class Subscription(Interest):
    version: str = ""  # last accepted version_info


class SotwApplier(Protocol):
    def apply(self, type_url: str, version: str, resources: tuple[Any, ...]) -> None:
        """Apply the full state-of-the-world set for `type_url`; raise ConfigError to NACK."""


@dataclass(frozen=True)
class ResourcesReceived:
    type_url: str
    version: str
    nonce: str
    resources: tuple[object, ...]  # google.protobuf.Any, unpacked by the applier

    def apply_to(self, applier: SotwApplier) -> None:
        applier.apply(self.type_url, self.version, self.resources)


SubscriptionT = TypeVar("SubscriptionT", bound=Interest)
RequestT = TypeVar("RequestT")


@dataclass
class AdsBookkeeping(Generic[SubscriptionT, RequestT]):
    """The rules both ADS protocols share: the types subscribed in Envoy's order, which
    wildcard types are fetched, what a new stream resets and resends, which responses are
    answered, and the node on every request or on the stream's first only."""

    request_type: ClassVar[Any]  # DiscoveryRequest or DeltaDiscoveryRequest

    node: base_pb2.Node
    # Envoy sends the node on every request unless set_node_on_first_message_only.
    node_on_every_request: bool = True
    subscriptions: dict[str, SubscriptionT] = field(default_factory=dict)
    first_request_sent: bool = False

    def __post_init__(self) -> None:
        for type_url in SUBSCRIPTION_ORDER:
            self.subscriptions[type_url] = self._new_subscription(
                type_url, type_url in WILDCARD_TYPES)

    def subscribe_wildcard(self, type_urls: Iterable[str]) -> None:
        """Which of LDS/CDS to fetch (those the bootstrap puts on ADS); the others off."""
        wanted = set(type_urls)
        for type_url in WILDCARD_TYPES:
            self.subscriptions[type_url].wildcard = type_url in wanted

    def stream_started(self) -> list[RequestT]:
        """A new stream: forget nonces, (re)send every active subscription in Envoy's order
        with what we hold."""
        self.first_request_sent = False
        requests = []
        for type_url in SUBSCRIPTION_ORDER:
            subscription = self.subscriptions[type_url]
            subscription.nonce = ""
            subscription.sent_on_stream = False
            if subscription.active:
                requests.append(self._first_request(subscription))
        return requests

    def health_report(self, healthy: bool, message: str = "") -> RequestT:
        """The application is ready, or not (and why): a request of the health type, with the
        node as every request of the stream has it."""
        request = self.request_type(type_url=HEALTH_TYPE_URL)
        if not healthy:
            request.error_detail.CopyFrom(status_pb2.Status(code=UNAVAILABLE, message=message))
        if self.node_on_every_request or not self.first_request_sent:
            request.node.CopyFrom(self.node)
            self.first_request_sent = True
        return request  # type: ignore[no-any-return]

    def _answering(self, type_url: str, nonce: str) -> SubscriptionT | None:
        """The subscription a response of `type_url` answers (its nonce remembered), or None
        for a type we did not ask for on this stream (Envoy drops it unanswered)."""
        subscription = self.subscriptions.get(type_url)
        if subscription is None or not subscription.sent_on_stream:
            return None
        subscription.nonce = nonce
        return subscription

    def _sending(self, subscription: SubscriptionT, request: Any) -> None:
        """Bookkeeping of every request sent: the node as configured, sent on this stream."""
        if self.node_on_every_request or not self.first_request_sent:
            request.node.CopyFrom(self.node)
            self.first_request_sent = True
        subscription.sent_on_stream = True

    def _new_subscription(self, type_url: str, wildcard: bool) -> SubscriptionT:
        raise NotImplementedError

    def _first_request(self, subscription: SubscriptionT) -> RequestT:
        raise NotImplementedError


@dataclass
class AdsProtocol(AdsBookkeeping[Subscription, discovery_pb2.DiscoveryRequest]):
    method = "StreamAggregatedResources"  # the ADS stream this protocol speaks
    request_type = discovery_pb2.DiscoveryRequest

    def received(self, response: discovery_pb2.DiscoveryResponse) -> ResourcesReceived | None:
        """A response: remember its nonce; None for a type we did not ask for."""
        if self._answering(response.type_url, response.nonce) is None:
            return None
        return ResourcesReceived(response.type_url, response.version_info, response.nonce,
                                 tuple(response.resources))

    def accept(self, received: ResourcesReceived) -> discovery_pb2.DiscoveryRequest:
        subscription = self.subscriptions[received.type_url]
        subscription.version = received.version
        subscription.received_once = True
        subscription.last_error = ""
        return self._request(subscription)

    def reject(self, received: ResourcesReceived, error: str) -> discovery_pb2.DiscoveryRequest:
        subscription = self.subscriptions[received.type_url]
        subscription.last_error = error
        detail = status_pb2.Status(code=INVALID_ARGUMENT, message=error)
        return self._request(subscription, error_detail=detail)

    def set_names(self, type_url: str, names: Iterable[str]
                  ) -> discovery_pb2.DiscoveryRequest | None:
        """Change the named interest of RDS/EDS; a request when it changed, else None."""
        subscription = self.subscriptions[type_url]
        wanted = frozenset(names)
        if wanted == subscription.names:
            return None
        subscription.names = wanted
        if not wanted and not subscription.sent_on_stream:
            return None
        return self._request(subscription)

    def _request(self, subscription: Subscription,
                 error_detail: status_pb2.Status | None = None
                 ) -> discovery_pb2.DiscoveryRequest:
        request = discovery_pb2.DiscoveryRequest(
            version_info=subscription.version,
            type_url=subscription.type_url,
            response_nonce=subscription.nonce,
            resource_names=[] if subscription.wildcard else sorted(subscription.names),
        )
        if error_detail is not None:
            request.error_detail.CopyFrom(error_detail)
        self._sending(subscription, request)
        return request

    def _new_subscription(self, type_url: str, wildcard: bool) -> Subscription:
        return Subscription(type_url, wildcard)

    def _first_request(self, subscription: Subscription) -> discovery_pb2.DiscoveryRequest:
        return self._request(subscription)  # with the version held, so a reconnect resumes
