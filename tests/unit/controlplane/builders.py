"""Small resource builders and a scripted client for control-plane unit tests."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from controlplane.cache import Snapshot
from controlplane.protocol.events import Action, Push
from controlplane.protocol.sotw import SotwStream
from protos.loader import parse_any_resource
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION

ADS = {"ads": {}, "resource_api_version": "V3"}
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def cluster(name: str, timeout: str = "1s") -> dict[str, Any]:
    return {"@type": CLUSTER, "name": name, "type": "EDS", "connect_timeout": timeout,
            "eds_cluster_config": {"eds_config": ADS}}


def endpoints(name: str, *ports: int) -> dict[str, Any]:
    return {"@type": CLUSTER_LOAD_ASSIGNMENT, "cluster_name": name, "endpoints": [{
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}}} for port in ports]}]}


def listener(name: str, route: str, port: int = 10000) -> dict[str, Any]:
    return {"@type": LISTENER, "name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": name,
                                 "rds": {"route_config_name": route, "config_source": ADS},
                                 "http_filters": [{"name": "envoy.filters.http.router",
                                                   "typed_config": {"@type": ROUTER}}]}}]}]}


def route(name: str, *clusters: str) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/{target}"}, "route": {"cluster": target}}
              for target in clusters]
    return {"@type": ROUTE_CONFIGURATION, "name": name,
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": routes}]}


def snapshot(*resources: dict[str, Any]) -> Snapshot:
    by_type: dict[str, dict[str, Message]] = {}
    for index, obj in enumerate(resources):
        message = parse_any_resource(obj, index=index)
        name = obj.get("name") or obj["cluster_name"]
        by_type.setdefault(obj["@type"], {})[name] = message
    return Snapshot.build(by_type)


def request(type_url: str, names: tuple[str, ...] = (), *, nonce: str = "", version: str = "",
            error: str = "", node_id: str = "") -> discovery_pb2.DiscoveryRequest:
    message = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                             response_nonce=nonce, version_info=version)
    if node_id:
        message.node.CopyFrom(base_pb2.Node(id=node_id, cluster="test"))
    if error:
        message.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return message


class Holder:
    """The current snapshot a stream resolves to; tests swap it."""

    def __init__(self, current: Snapshot) -> None:
        self.current = current

    def __call__(self, node: base_pb2.Node) -> Snapshot:
        return self.current


def pushes(actions: list[Action]) -> list[Push]:
    return [action for action in actions if isinstance(action, Push)]


def names(push: Push) -> list[str]:
    return [resource.name for resource in push.resources]


def new_stream(current: Snapshot) -> tuple[SotwStream, Holder]:
    holder = Holder(current)
    return SotwStream(holder), holder


def ack(stream: SotwStream, push: Push, names_: tuple[str, ...] = (), now: float = 0.0
        ) -> list[Action]:
    return stream.receive(request(push.type_url, names_, nonce=push.nonce, version=push.version),
                          now)
