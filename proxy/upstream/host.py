"""Upstream hosts and what callers report about them.

A `Host` is the mutable run-time twin of one endpoint of a cluster: address, weight, locality,
priority, health flags (Envoy's `Host::HealthFlag`: active health check, outlier detection, EDS
status) and live counters (active requests and connections) that least-request reads.

Callers report outcomes with `Result` (Envoy's `Upstream::Outlier::Result`) or an HTTP status
through `ClusterRuntime.report(...)`; the runtime feeds outlier detection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from proxy.model.endpoint import EdsHealth, Locality
from proxy.model.metadata import SocketMetadata


class HealthFlag(enum.IntFlag):
    """Why a host is not healthy (envoy/upstream/host_description.h HealthFlag)."""

    NONE = 0
    FAILED_ACTIVE_HC = 1
    FAILED_OUTLIER_CHECK = 2
    FAILED_EDS_HEALTH = 4
    DEGRADED_ACTIVE_HC = 8
    DEGRADED_EDS_HEALTH = 16
    PENDING_ACTIVE_HC = 32  # added, not checked yet
    PENDING_DYNAMIC_REMOVAL = 64  # gone from discovery, kept while it passes health checks


class Health(enum.Enum):
    """Envoy's coarse host health: unhealthy, degraded or healthy."""

    UNHEALTHY = "unhealthy"
    DEGRADED = "degraded"
    HEALTHY = "healthy"


_FAILED = (HealthFlag.FAILED_ACTIVE_HC | HealthFlag.FAILED_OUTLIER_CHECK
           | HealthFlag.FAILED_EDS_HEALTH)
_DEGRADED = HealthFlag.DEGRADED_ACTIVE_HC | HealthFlag.DEGRADED_EDS_HEALTH


class Result(enum.Enum):
    """A request or connection outcome, as Envoy's outlier detector receives it."""

    # Connection-level (local origin), from tcp_proxy or a connection pool.
    LOCAL_ORIGIN_CONNECT_SUCCESS = "local_origin_connect_success"
    LOCAL_ORIGIN_CONNECT_SUCCESS_FINAL = "local_origin_connect_success_final"
    LOCAL_ORIGIN_CONNECT_FAILED = "local_origin_connect_failed"
    LOCAL_ORIGIN_TIMEOUT = "local_origin_timeout"
    # Request-level (external origin), for protocols without HTTP status codes.
    EXT_ORIGIN_REQUEST_SUCCESS = "ext_origin_request_success"
    EXT_ORIGIN_REQUEST_FAILED = "ext_origin_request_failed"


@dataclass(eq=False, slots=True)
class Host:
    """One upstream host. Identity is (address, port); the rest is updated in place."""

    address: str  # resolved IP
    port: int
    weight: int = 1
    locality: Locality = field(default_factory=Locality)
    locality_weight: int | None = None  # its LocalityLbEndpoints' load_balancing_weight
    priority: int = 0
    hostname: str = ""  # the endpoint's hostname, or the DNS name it was resolved from
    health_check_port: int = 0  # endpoint health_check_config.port_value; 0: `port`
    # endpoint health_check_config.hostname: the Host/:authority of HTTP/gRPC checks.
    health_check_hostname: str = ""
    active_health_check_disabled: bool = False
    # The endpoint's and its locality's `envoy.transport_socket_match` metadata: the cluster
    # picks this host's transport socket with them (Cluster.socket_for).
    socket_metadata: SocketMetadata | None = None
    locality_socket_metadata: SocketMetadata | None = None
    flags: HealthFlag = HealthFlag.NONE
    active_requests: int = 0
    active_connections: int = 0
    # Envoy /clusters per-host counters.
    connections_total: int = 0
    requests_total: int = 0
    requests_error: int = 0
    requests_success: int = 0
    # Computed once (read per request for stream info and access logs).
    address_port: tuple[str, int] = field(init=False, repr=False)
    address_text: str = field(init=False, repr=False)  # "address:port"

    def __post_init__(self) -> None:
        self.address_port = (self.address, self.port)
        self.address_text = f"{self.address}:{self.port}"

    @property
    def key(self) -> tuple[str, int]:
        return self.address_port

    @property
    def health(self) -> Health:
        if self.flags & _FAILED:
            return Health.UNHEALTHY
        if self.flags & _DEGRADED:
            return Health.DEGRADED
        return Health.HEALTHY

    @property
    def healthy(self) -> bool:
        return self.health is Health.HEALTHY

    def set_flag(self, flag: HealthFlag, on: bool) -> None:
        self.flags = (self.flags | flag) if on else (self.flags & ~flag)

    def set_eds_health(self, status: EdsHealth) -> None:
        self.set_flag(HealthFlag.FAILED_EDS_HEALTH, status.failed)
        self.set_flag(HealthFlag.DEGRADED_EDS_HEALTH, status.degraded)

    def health_flag_names(self) -> list[str]:
        """Envoy's /clusters `health_flags` words (`healthy`, `/failed_active_hc`, ...)."""
        names = [flag.name.lower() for flag in HealthFlag
                 if flag is not HealthFlag.NONE and flag.name and self.flags & flag]
        return names or ["healthy"]

    def __repr__(self) -> str:
        return (f"Host({self.address}:{self.port} w={self.weight} p={self.priority} "
                f"{self.health.value} active_rq={self.active_requests})")
