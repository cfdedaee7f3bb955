"""ClusterLoadAssignment -> frozen model: localities, priorities, weights, EDS health status.

Used for EDS responses and for a cluster's inline `load_assignment` (STATIC, STRICT_DNS,
LOGICAL_DNS). Field semantics follow api/envoy/config/endpoint/v3/endpoint.proto and
endpoint_components.proto. Unsupported behaviour-changing fields are refused by name
(`policy.drop_overloads`, `named_endpoints`, LEDS, pipes, additional addresses...).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2

from protos.errors import ConfigError, unsupported
from proxy.model.fields import reject_unsupported
from proxy.model.metadata import SocketMetadata, socket_metadata

# Envoy's default overprovisioning factor, in percent (endpoint.proto Policy).
DEFAULT_OVERPROVISIONING_FACTOR = 140


class EdsHealth(enum.IntEnum):
    """config.core.v3.HealthStatus, as sent by the control plane for each endpoint."""

    UNKNOWN = 0
    HEALTHY = 1
    UNHEALTHY = 2
    DRAINING = 3
    TIMEOUT = 4
    DEGRADED = 5

    @property
    def failed(self) -> bool:
        """Envoy sets FAILED_EDS_HEALTH for UNHEALTHY, DRAINING and TIMEOUT."""
        return self in (EdsHealth.UNHEALTHY, EdsHealth.DRAINING, EdsHealth.TIMEOUT)

    @property
    def degraded(self) -> bool:
        return self is EdsHealth.DEGRADED


@dataclass(frozen=True)
class Locality:
    region: str = ""
    zone: str = ""
    sub_zone: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.region, self.zone, self.sub_zone) if part)


@dataclass(frozen=True)
class Endpoint:
    """One upstream endpoint. `address` is an IP, or a DNS name for STRICT/LOGICAL_DNS."""

    address: str
    port: int
    weight: int = 1
    health_status: EdsHealth = EdsHealth.UNKNOWN
    hostname: str = ""
    health_check_port: int = 0  # 0: use `port`
    health_check_hostname: str = ""
    active_health_check_disabled: bool = False
    # metadata.filter_metadata["envoy.transport_socket_match"] (proxy.model.socket_match);
    # None when absent. Other metadata changes nothing we do and is not kept.
    socket_metadata: SocketMetadata | None = None


@dataclass(frozen=True)
class LocalityEndpoints:
    locality: Locality
    endpoints: tuple[Endpoint, ...]
    priority: int = 0
    weight: int | None = None  # load_balancing_weight; None when unset
    socket_metadata: SocketMetadata | None = None  # the locality's, as for Endpoint


@dataclass(frozen=True)
class LoadAssignment:
    cluster_name: str
    localities: tuple[LocalityEndpoints, ...] = ()
    overprovisioning_factor: int = DEFAULT_OVERPROVISIONING_FACTOR

    @property
    def priority_count(self) -> int:
        return 1 + max((group.priority for group in self.localities), default=0)

    def at_priority(self, priority: int) -> tuple[LocalityEndpoints, ...]:
        return tuple(group for group in self.localities if group.priority == priority)

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(ep for group in self.localities for ep in group.endpoints)


_ASSIGNMENT_FIELDS = {"cluster_name", "endpoints", "policy"}
_POLICY_FIELDS = {"overprovisioning_factor"}
_LOCALITY_FIELDS = {"locality", "lb_endpoints", "load_balancing_weight", "priority", "metadata"}
_LB_ENDPOINT_FIELDS = {"endpoint", "health_status", "load_balancing_weight", "metadata"}
_ENDPOINT_FIELDS = {"address", "hostname", "health_check_config"}
_HC_CONFIG_FIELDS = {"port_value", "hostname", "disable_active_health_check"}
_SOCKET_FIELDS = {"address", "port_value", "protocol", "ipv4_compat"}


def translate_cluster_load_assignment(
    message: endpoint_pb2.ClusterLoadAssignment,
) -> LoadAssignment:
    """ClusterLoadAssignment -> LoadAssignment, raising ConfigError naming the bad field."""
    reject_unsupported(message, _ASSIGNMENT_FIELDS)
    factor = DEFAULT_OVERPROVISIONING_FACTOR
    if message.HasField("policy"):
        policy = message.policy
        if len(policy.drop_overloads):
            raise unsupported("policy.drop_overloads")
        reject_unsupported(policy, _POLICY_FIELDS, prefix="policy.")
        if policy.HasField("overprovisioning_factor"):
            factor = policy.overprovisioning_factor.value
            if factor <= 0:
                raise ConfigError("must be greater than 0", field="policy.overprovisioning_factor")
    localities = tuple(
        _translate_locality(group, f"endpoints[{index}]")
        for index, group in enumerate(message.endpoints)
    )
    return LoadAssignment(message.cluster_name, localities, factor)


def _translate_locality(group: Any, prefix: str) -> LocalityEndpoints:
    reject_unsupported(group, _LOCALITY_FIELDS, prefix=f"{prefix}.")
    locality = Locality(group.locality.region, group.locality.zone,
                        group.locality.sub_zone)
    weight: int | None = None
    if group.HasField("load_balancing_weight"):
        weight = group.load_balancing_weight.value
        if weight < 1:
            raise ConfigError("must be at least 1", field=f"{prefix}.load_balancing_weight")
    endpoints = tuple(
        _translate_lb_endpoint(lb_endpoint, f"{prefix}.lb_endpoints[{index}]")
        for index, lb_endpoint in enumerate(group.lb_endpoints)
    )
    return LocalityEndpoints(locality, endpoints, group.priority, weight,
                             socket_metadata(group.metadata))


def _translate_lb_endpoint(lb_endpoint: Any, prefix: str) -> Endpoint:
    message = lb_endpoint
    reject_unsupported(message, _LB_ENDPOINT_FIELDS, prefix=f"{prefix}.")
    weight = 1
    if message.HasField("load_balancing_weight"):
        weight = message.load_balancing_weight.value
        if weight < 1:
            raise ConfigError("must be at least 1", field=f"{prefix}.load_balancing_weight")
    endpoint = message.endpoint
    reject_unsupported(endpoint, _ENDPOINT_FIELDS, prefix=f"{prefix}.endpoint.")
    address, port = _translate_socket_address(endpoint, f"{prefix}.endpoint.address")
    hc = endpoint.health_check_config
    reject_unsupported(hc, _HC_CONFIG_FIELDS, prefix=f"{prefix}.endpoint.health_check_config.")
    return Endpoint(
        address=address,
        port=port,
        weight=weight,
        health_status=EdsHealth(message.health_status),
        hostname=endpoint.hostname,
        health_check_port=hc.port_value,
        health_check_hostname=hc.hostname,
        active_health_check_disabled=hc.disable_active_health_check,
        socket_metadata=socket_metadata(message.metadata),
    )


def _translate_socket_address(endpoint: Any, field: str) -> tuple[str, int]:
    address = endpoint.address
    if not address.HasField("socket_address"):
        which = address.WhichOneof("address") or "socket_address"
        if which == "socket_address":
            raise ConfigError("an endpoint needs a socket_address", field=field)
        raise unsupported(f"{field}.{which}")
    socket_address = address.socket_address
    reject_unsupported(socket_address, _SOCKET_FIELDS, prefix=f"{field}.socket_address.")
    if socket_address.protocol != 0:
        raise unsupported(f"{field}.socket_address.protocol", "only TCP")
    if not socket_address.address:
        raise ConfigError("an address is required", field=f"{field}.socket_address.address")
    port = socket_address.port_value
    if not 0 < port < 65536:
        raise ConfigError("port_value must be 1..65535", field=f"{field}.socket_address.port_value")
    return socket_address.address, port
