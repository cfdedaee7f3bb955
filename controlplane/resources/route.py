"""RouteConfiguration (RDS): named by `name`; references clusters from its route actions."""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from controlplane.resources.base import ResourceType, check_unique, require_name
from controlplane.resources.walk import Reference, find_references
from protos import registry
from protos.errors import ConfigError


def name_of(message: Message) -> str:
    return str(message.name)  # type: ignore[attr-defined]


def references(message: Message) -> list[Reference]:
    return find_references(message)


def validate(message: Message) -> None:
    assert isinstance(message, route_pb2.RouteConfiguration)
    require_name(message.name)
    check_unique([host.name for host in message.virtual_hosts], "virtual_hosts",
                 "virtual host name")
    # Envoy rejects a domain listed in two virtual hosts of one route configuration
    # (route_components.proto, VirtualHost.domains: "must be unique").
    owner: dict[str, int] = {}
    for host_index, host in enumerate(message.virtual_hosts):
        if not host.domains:
            raise ConfigError("at least one domain is required",
                              field=f"virtual_hosts[{host_index}].domains")
        for domain_index, domain in enumerate(host.domains):
            if domain in owner:
                raise ConfigError(f"domain {domain!r} already used by virtual_hosts"
                                  f"[{owner[domain]}]",
                                  field=f"virtual_hosts[{host_index}].domains[{domain_index}]")
            owner[domain] = host_index
        for route_index, route in enumerate(host.routes):
            _validate_route(route, f"virtual_hosts[{host_index}].routes[{route_index}]")
    find_references(message)  # every typed_per_filter_config must resolve


def _validate_route(route: route_pb2.Route, path: str) -> None:
    if not route.HasField("match"):
        raise ConfigError("a match is required", field=f"{path}.match")
    if route.WhichOneof("action") is None:
        raise ConfigError("an action (route, redirect, direct_response) is required",
                          field=f"{path}.route")
    if route.HasField("route"):
        action = route.route
        if action.WhichOneof("cluster_specifier") is None:
            raise ConfigError("a cluster or weighted_clusters is required",
                              field=f"{path}.route.cluster")
        if action.HasField("weighted_clusters") and not action.weighted_clusters.clusters:
            raise ConfigError("at least one cluster is required",
                              field=f"{path}.route.weighted_clusters.clusters")


ROUTE = ResourceType(
    type_url=registry.ROUTE_CONFIGURATION, short_name="route",
    message_class=route_pb2.RouteConfiguration, name_of=name_of, references=references,
    validate=validate,
)
