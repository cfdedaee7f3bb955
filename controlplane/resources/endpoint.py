"""ClusterLoadAssignment (EDS): named by `cluster_name` (or an EDS service_name); no references."""

from __future__ import annotations

from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf.message import Message

from controlplane.resources.base import ResourceType, require_name
from controlplane.resources.walk import Reference
from protos import registry
from protos.errors import ConfigError


def name_of(message: Message) -> str:
    return str(message.cluster_name)  # type: ignore[attr-defined]


def references(message: Message) -> list[Reference]:
    return []


def validate(message: Message) -> None:
    assert isinstance(message, endpoint_pb2.ClusterLoadAssignment)
    require_name(message.cluster_name, "cluster_name")
    for locality_index, locality in enumerate(message.endpoints):
        base = f"endpoints[{locality_index}]"
        # endpoint_components.proto: load_balancing_weight must be >= 1 when set.
        if locality.HasField("load_balancing_weight") and locality.load_balancing_weight.value < 1:
            raise ConfigError("must be at least 1", field=f"{base}.load_balancing_weight")
        for index, lb_endpoint in enumerate(locality.lb_endpoints):
            _validate_lb_endpoint(lb_endpoint, f"{base}.lb_endpoints[{index}]")


def _validate_lb_endpoint(lb_endpoint: endpoint_pb2.LbEndpoint, path: str) -> None:
    if lb_endpoint.HasField("endpoint_name"):
        raise ConfigError("named endpoints are not supported by Pointsman",
                          field=f"{path}.endpoint_name")
    address = lb_endpoint.endpoint.address
    if not lb_endpoint.endpoint.HasField("address"):
        raise ConfigError("an address is required", field=f"{path}.endpoint.address")
    if address.HasField("socket_address"):
        socket_address = address.socket_address
        if not socket_address.address:
            raise ConfigError("an address is required",
                              field=f"{path}.endpoint.address.socket_address.address")
        if socket_address.port_value > 65535:
            raise ConfigError(f"port {socket_address.port_value} is out of range",
                              field=f"{path}.endpoint.address.socket_address.port_value")
    weight = lb_endpoint.load_balancing_weight
    if lb_endpoint.HasField("load_balancing_weight") and weight.value < 1:
        raise ConfigError("must be at least 1", field=f"{path}.load_balancing_weight")


ENDPOINT = ResourceType(
    type_url=registry.CLUSTER_LOAD_ASSIGNMENT, short_name="endpoint",
    message_class=endpoint_pb2.ClusterLoadAssignment, name_of=name_of, references=references,
    validate=validate,
)
