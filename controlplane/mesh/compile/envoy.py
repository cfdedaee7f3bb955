"""Envoy v3 resources from plain dicts (protobuf's JSON mapping), type URLs, and packing.

The compiler writes Envoy configuration as the same dicts a user would write in YAML (easy to
read next to Envoy's docs), converts each once with `json_format.ParseDict`, and packs it once
into a `CachedResource` that every sidecar seeing it shares."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.cache import CachedResource
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from protos import registry

T = "type.googleapis.com/"
HCM = T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
TCP_PROXY = T + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
ROUTER = T + "envoy.extensions.filters.http.router.v3.Router"
RBAC = T + "envoy.extensions.filters.http.rbac.v3.RBAC"
NETWORK_RBAC = T + "envoy.extensions.filters.network.rbac.v3.RBAC"
LOCAL_RATELIMIT = T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
FAULT = T + "envoy.extensions.filters.http.fault.v3.HTTPFault"
CORS = T + "envoy.extensions.filters.http.cors.v3.Cors"
CORS_POLICY = T + "envoy.extensions.filters.http.cors.v3.CorsPolicy"
TLS_INSPECTOR = T + "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
DOWNSTREAM_TLS = T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
HTTP_OPTIONS = T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

_CLASSES: dict[str, type[Message]] = {
    LISTENER.type_url: listener_pb2.Listener,
    ROUTE.type_url: route_pb2.RouteConfiguration,
    CLUSTER.type_url: cluster_pb2.Cluster,
    ENDPOINT.type_url: endpoint_pb2.ClusterLoadAssignment,
}


def to_message(type_url: str, body: dict[str, Any]) -> Message:
    registry.load_all()
    message = _CLASSES[type_url]()
    json_format.ParseDict(body, message)
    return message


def pack(type_url: str, name: str, body: dict[str, Any]) -> CachedResource:
    """One resource, converted and serialised once."""
    return CachedResource.of(type_url, name, to_message(type_url, body))


def seconds(value: float) -> str:
    """A protobuf JSON Duration."""
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def address(ip: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": ip, "port_value": port}}


def filter_(name: str, type_url: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": type_url, **(config or {})}}
