"""Health reports on an ADS stream, sans-I/O: a sidecar saying whether its application is ready.

The wire format is Istio's (pilot/pkg/xds/ads.go, `v3.HealthInfoType`; istio-agent's
pkg/istio-agent/health sends it for WorkloadEntry auto-registration): a DiscoveryRequest (or
DeltaDiscoveryRequest) whose type_url is `type.googleapis.com/istio.v1.HealthInformation`,
with no error_detail when the application is healthy, and with error_detail (its message saying
why) when it is not. No such message type exists: only the type URL and error_detail are read.
A health report is not a subscription: it is never answered, is no ACK or NACK, and is only
taken on an aggregated (ADS) stream; on a single-type stream its type is refused as any other.
"""

from __future__ import annotations

from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2

from controlplane.protocol.events import Action, HealthReported, NodeIdentified

HEALTH_TYPE_URL = "type.googleapis.com/istio.v1.HealthInformation"


class _Stream(Protocol):
    node: base_pb2.Node | None
    default_type: str


def health_report(stream: _Stream, request: Any) -> list[Action] | None:
    """The actions of `request` when it is a health report on an ADS stream (the node first
    when it is the stream's first request), else None: the request is an xDS one."""
    if request.type_url != HEALTH_TYPE_URL or stream.default_type:
        return None
    actions: list[Action] = []
    if stream.node is None:
        stream.node = base_pb2.Node()
        stream.node.CopyFrom(request.node)
        actions.append(NodeIdentified(stream.node))
    if request.HasField("error_detail"):
        actions.append(HealthReported(False, request.error_detail.message))
    else:
        actions.append(HealthReported(True))
    return actions
