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
- a change of interest (new RDS/EDS names) is a request with the current version and nonce.
The adapter (proxy.xds.client) does the I/O and applies resources between `received` and
`accept` / `reject`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION

INVALID_ARGUMENT = 3  # google.rpc.Code
# Envoy subscribes in this order on a new ADS stream: CDS, EDS, LDS, RDS (xds_protocol,
# "eventual consistency considerations": make-before-break).
SUBSCRIPTION_ORDER = (CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION)
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})


@dataclass
class Subscription:
    type_url: str
    wildcard: bool
    names: frozenset[str] = frozenset()
    version: str = ""  # last accepted version_info
    nonce: str = ""  # last response nonce on the current stream
    sent_on_stream: bool = False
    received_once: bool = False
    last_error: str = ""

    @property
    def active(self) -> bool:
        return self.wildcard or bool(self.names)


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


@dataclass
class AdsProtocol:
    node: base_pb2.Node
    # Envoy sends the node on every request unless set_node_on_first_message_only.
    node_on_every_request: bool = True
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    first_request_sent: bool = False
    method = "StreamAggregatedResources"  # the ADS stream this protocol speaks

    def __post_init__(self) -> None:
        for type_url in SUBSCRIPTION_ORDER:
            self.subscriptions[type_url] = Subscription(type_url,
                                                        wildcard=type_url in WILDCARD_TYPES)

    def subscribe_wildcard(self, type_urls: Iterable[str]) -> None:
        """Which of LDS/CDS to fetch (those the bootstrap puts on ADS); the others off."""
        wanted = set(type_urls)
        for type_url in WILDCARD_TYPES:
            self.subscriptions[type_url].wildcard = type_url in wanted

    def stream_started(self) -> list[discovery_pb2.DiscoveryRequest]:
        """A new stream: forget nonces, (re)send every active subscription with the
        versions we hold."""
        self.first_request_sent = False
        requests = []
        for type_url in SUBSCRIPTION_ORDER:
            subscription = self.subscriptions[type_url]
            subscription.nonce = ""
            subscription.sent_on_stream = False
            if subscription.active:
                requests.append(self._request(subscription))
        return requests

    def received(self, response: discovery_pb2.DiscoveryResponse) -> ResourcesReceived | None:
        """A response: remember its nonce; None for a type we did not ask for."""
        subscription = self.subscriptions.get(response.type_url)
        if subscription is None or not subscription.sent_on_stream:
            return None
        subscription.nonce = response.nonce
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
        if self.node_on_every_request or not self.first_request_sent:
            request.node.CopyFrom(self.node)
            self.first_request_sent = True
        subscription.sent_on_stream = True
        return request
