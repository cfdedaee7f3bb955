"""ADS incremental ("delta") client bookkeeping, sans-I/O: bootstrap `api_type: DELTA_GRPC`.

Rules from Envoy's xDS protocol document (api-docs/xds_protocol, "Incremental xDS") and its
client (source/extensions/config_subscription/grpc/new_delta_subscription_state.cc,
new_grpc_mux_impl.cc), checked against Envoy 1.40 in
tests/conformance/proxy/test_delta_ads_vs_envoy.py:
- per type, what we subscribe to: LDS and CDS are wildcard, sent as the legacy wildcard (a first
  request naming nothing); RDS and EDS are named, and a change of the wanted names is a request
  with `resource_names_subscribe` / `resource_names_unsubscribe` (only the difference);
- what we hold: each accepted resource's own version, by name. A resource in
  `removed_resources` is forgotten (a named one stays subscribed, waiting for the server);
- the first request of each type on a stream names every subscribed resource and carries the
  versions held in `initial_resource_versions`, so a reconnecting client is sent only what
  changed;
- a response is ACKed with its nonce, or NACKed with its nonce and an error_detail (the held
  versions do not change); a response is refused when a name repeats among the added and
  removed resources, or an added resource's Any is of another type (as Envoy); a resource
  without a body whose version is the one held is a heartbeat and is skipped; resources we did
  not subscribe to (named types) are dropped, as Envoy's watch map drops them;
- the node goes on every request unless `set_node_on_first_message_only`, then on the
  stream's first request only (as for SotW).
What the resources mean (removals of EDS/RDS resources are ignored, as Envoy's EDS cluster
and RDS subscription ignore them) is the applier's business: proxy.server.Server.apply_delta.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from protos.errors import ConfigError
from proxy.xds.protocol import INVALID_ARGUMENT, AdsBookkeeping, Interest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeltaResource:
    """One added or updated resource of a delta response, as the applier gets it."""

    name: str
    version: str
    resource: Any  # google.protobuf.Any, unpacked by the applier
    index: int  # its place in the response's `resources`, for error messages


class DeltaApplier(Protocol):
    def apply_delta(self, type_url: str, version: str, added: tuple[DeltaResource, ...],
                    removed: tuple[str, ...]) -> None:
        """Apply one incremental update; raise ConfigError to NACK (changing nothing)."""


@dataclass(frozen=True)
class DeltaReceived:
    """A delta response to apply (or, when `error` is set, to NACK as it is)."""

    type_url: str
    version: str  # system_version_info: for logs and the type's version in /config_dump
    nonce: str
    added: tuple[DeltaResource, ...]
    removed: tuple[str, ...]
    error: str = ""

    def apply_to(self, applier: DeltaApplier) -> None:
        if self.error:
            raise ConfigError(self.error)
        applier.apply_delta(self.type_url, self.version, self.added, self.removed)


@dataclass
class DeltaSubscription(Interest):
    held: dict[str, str] = field(default_factory=dict)  # name -> version accepted

    def wants(self, name: str) -> bool:
        return self.wildcard or name in self.names


@dataclass
class DeltaProtocol(AdsBookkeeping[DeltaSubscription, discovery_pb2.DeltaDiscoveryRequest]):
    method = "DeltaAggregatedResources"  # the ADS stream this protocol speaks
    request_type = discovery_pb2.DeltaDiscoveryRequest

    def received(self, response: discovery_pb2.DeltaDiscoveryResponse) -> DeltaReceived | None:
        """A response: None for a type we did not ask for (Envoy drops it unanswered)."""
        subscription = self._answering(response.type_url, response.nonce)
        if subscription is None:
            return None
        for problem in response.resource_errors:  # no config in them: only reported
            log.warning("%s: the server reports an error for %r: %s", response.type_url,
                        problem.resource_name.name, problem.error_detail.message)
        added, removed = _wanted(response, subscription)
        error = _malformed(response) or _bodiless(added)
        return DeltaReceived(response.type_url, response.system_version_info, response.nonce,
                             () if error else added, () if error else removed, error)

    def accept(self, received: DeltaReceived) -> discovery_pb2.DeltaDiscoveryRequest:
        subscription = self.subscriptions[received.type_url]
        for item in received.added:
            subscription.held[item.name] = item.version
        for name in received.removed:
            subscription.held.pop(name, None)
        subscription.received_once = True
        subscription.last_error = ""
        return self._request(subscription, response_nonce=received.nonce)

    def reject(self, received: DeltaReceived, error: str) -> discovery_pb2.DeltaDiscoveryRequest:
        subscription = self.subscriptions[received.type_url]
        subscription.last_error = error
        request = self._request(subscription, response_nonce=received.nonce)
        request.error_detail.CopyFrom(status_pb2.Status(code=INVALID_ARGUMENT, message=error))
        return request

    def set_names(self, type_url: str, names: Iterable[str]
                  ) -> discovery_pb2.DeltaDiscoveryRequest | None:
        """Change the named interest of RDS/EDS; a request saying what changed, else None."""
        subscription = self.subscriptions[type_url]
        wanted = frozenset(names)
        if wanted == subscription.names:
            return None
        added, gone = wanted - subscription.names, subscription.names - wanted
        subscription.names = wanted
        for name in gone:
            subscription.held.pop(name, None)
        if not subscription.sent_on_stream:
            # Never an empty first request: that would be a (legacy) wildcard subscription.
            return self._first_request(subscription) if wanted else None
        request = self._request(subscription)
        request.resource_names_subscribe.extend(sorted(added))
        request.resource_names_unsubscribe.extend(sorted(gone))
        return request

    def _first_request(self, subscription: DeltaSubscription
                       ) -> discovery_pb2.DeltaDiscoveryRequest:
        request = self._request(subscription)
        if not subscription.wildcard:
            request.resource_names_subscribe.extend(sorted(subscription.names))
        request.initial_resource_versions.update(subscription.held)
        return request

    def _request(self, subscription: DeltaSubscription, *, response_nonce: str = ""
                 ) -> discovery_pb2.DeltaDiscoveryRequest:
        request = discovery_pb2.DeltaDiscoveryRequest(type_url=subscription.type_url,
                                                      response_nonce=response_nonce)
        self._sending(subscription, request)
        return request

    def _new_subscription(self, type_url: str, wildcard: bool) -> DeltaSubscription:
        return DeltaSubscription(type_url, wildcard)


def _wanted(response: discovery_pb2.DeltaDiscoveryResponse, subscription: DeltaSubscription
            ) -> tuple[tuple[DeltaResource, ...], tuple[str, ...]]:
    """The added resources and removed names we subscribed to, heartbeats left out."""
    added = tuple(DeltaResource(item.name, item.version, item.resource, index)
                  for index, item in enumerate(response.resources)
                  if subscription.wants(item.name) and not _heartbeat(item, subscription.held))
    removed = tuple(name for name in response.removed_resources if subscription.wants(name))
    return added, removed


def _bodiless(added: tuple[DeltaResource, ...]) -> str:
    """An added resource without a body that is not a heartbeat: refused."""
    for item in added:
        if not item.resource.type_url:
            return (f"resources[{item.index}]: field 'resource' is required (a heartbeat "
                    f"repeats the version held; {item.name!r} is not held at "
                    f"{item.version!r})")
    return ""


def _heartbeat(item: discovery_pb2.Resource, held: dict[str, str]) -> bool:
    """A resource without a body at the version we hold (xds_protocol, "Heartbeats")."""
    return not item.HasField("resource") and held.get(item.name) == item.version


def _malformed(response: discovery_pb2.DeltaDiscoveryResponse) -> str:
    """Why the response as a whole is refused, or "" (Envoy's checks in handleGoodResponse,
    plus the fields we do not implement)."""
    if response.removed_resource_names:
        return "removed_resource_names (xdstp:// names) is not supported"
    seen: set[str] = set()
    for index, item in enumerate(response.resources):
        if item.name in seen:
            return f"duplicate name {item.name} found among added/updated resources"
        seen.add(item.name)
        problem = _resource_problem(item, response.type_url)
        if problem:
            return f"resources[{index}]: {problem}"
    for name in response.removed_resources:
        if name in seen:
            return f"duplicate name {name} found in the union of added+removed resources"
        seen.add(name)
    return ""


def _resource_problem(item: discovery_pb2.Resource, type_url: str) -> str:
    if item.HasField("ttl"):
        return "field 'ttl': resource TTLs are not supported"
    if item.aliases:
        return "field 'aliases': on-demand aliases (VHDS) are not supported"
    if not item.HasField("resource"):
        return ""  # a heartbeat, or refused by the applier if it is not one
    if item.resource.type_url != type_url:
        return (f"type URL {item.resource.type_url} embedded in an individual Any does not "
                f"match the message-wide type URL {type_url}")
    return ""
