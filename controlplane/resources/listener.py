"""Listener (LDS): named by `name`; references RouteConfigurations (RDS) and clusters."""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from controlplane.resources.base import ResourceType, check_unique, require_name
from controlplane.resources.walk import Reference, find_references, walk
from protos import registry
from protos.errors import ConfigError

HCM = hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name


def name_of(message: Message) -> str:
    return str(message.name)  # type: ignore[attr-defined]


def references(message: Message) -> list[Reference]:
    return find_references(message)


def validate(message: Message) -> None:
    assert isinstance(message, listener_pb2.Listener)
    require_name(message.name)
    # envoy.config.listener.v3.Listener: a listener binds `address` unless it is an API
    # listener (gRPC proxyless clients: api_listener holding an HttpConnectionManager).
    if not message.HasField("address") and not message.HasField("api_listener"):
        raise ConfigError("a listener needs an address (or an api_listener)", field="address")
    check_unique([chain.name for chain in message.filter_chains if chain.name],
                 "filter_chains", "filter chain name")
    for path, inner in walk(message):  # also proves every typed_config resolves
        if inner.DESCRIPTOR.full_name == HCM:
            _validate_hcm(inner, path)  # type: ignore[arg-type]


def _validate_hcm(hcm: hcm_pb2.HttpConnectionManager, path: str) -> None:
    # http_connection_manager.proto: route_specifier is a required oneof (rds, route_config,
    # scoped_routes); RDS needs a config_source saying where routes come from.
    specifier = hcm.WhichOneof("route_specifier")
    if specifier is None:
        raise ConfigError("one of rds or route_config is required", field=f"{path}.rds")
    if specifier == "scoped_routes":
        raise ConfigError("scoped_routes is not supported by Pointsman",
                          field=f"{path}.scoped_routes")
    if specifier == "rds":
        if not hcm.rds.route_config_name:
            raise ConfigError("a route_config_name is required",
                              field=f"{path}.rds.route_config_name")
        if not hcm.rds.HasField("config_source"):
            raise ConfigError("a config_source is required (e.g. {ads: {}})",
                              field=f"{path}.rds.config_source")


LISTENER = ResourceType(
    type_url=registry.LISTENER, short_name="listener", message_class=listener_pb2.Listener,
    name_of=name_of, references=references, validate=validate, full_set=True,
)
