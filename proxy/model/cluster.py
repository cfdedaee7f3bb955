"""Cluster proto -> frozen model (api/envoy/config/cluster/v3/cluster.proto).

Translated once at the config boundary. Everything the data path needs is here: discovery type,
connect timeout, LB policy and its config, inline endpoints, health checks, outlier detection,
circuit breakers, panic threshold, the upstream TLS context, `transport_socket_matches` (a
transport socket per endpoint by metadata: proxy.model.socket_match) and the protocol options
(proxy.model.protocol_options: what the HTTP pools and tcp_proxy need; unknown keys refused).
Any other field that is set and would change behaviour raises ConfigError naming it
(proxy.model.fields.reject_unsupported); among them `transport_socket_matcher`, the newer
matcher tree that chooses among the named transport_socket_matches.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2

from protos.errors import ConfigError, unsupported
from proxy.model.circuit_breakers import CircuitBreakers, translate_circuit_breakers
from proxy.model.endpoint import LoadAssignment, translate_cluster_load_assignment
from proxy.model.fields import optional_seconds, reject_unsupported, seconds
from proxy.model.health import (
    HealthCheck,
    OutlierDetection,
    translate_health_check,
    translate_outlier_detection,
)
from proxy.model.lb import (
    LbPolicy,
    LeastRequestConfig,
    MaglevConfig,
    RingHashConfig,
    translate_lb_settings,
)
from proxy.model.metadata import SocketMetadata
from proxy.model.protocol_options import ProtocolOptions, translate_protocol_options
from proxy.model.quic import is_quic_upstream, translate_quic_upstream_transport
from proxy.model.socket_match import (
    DEFAULT_NAME,
    SocketChoice,
    TransportSocketMatch,
    resolve,
    translate_socket_matches,
)
from proxy.model.tls import UpstreamTls, translate_upstream_tls


class DiscoveryType(enum.IntEnum):
    STATIC = 0
    STRICT_DNS = 1
    LOGICAL_DNS = 2
    EDS = 3


class DnsLookupFamily(enum.IntEnum):
    AUTO = 0  # Envoy: IPv6 first, falling back to IPv4
    V4_ONLY = 1
    V6_ONLY = 2
    V4_PREFERRED = 3
    ALL = 4


@dataclass(frozen=True)
class Cluster:
    name: str
    type: DiscoveryType = DiscoveryType.STATIC
    eds_service_name: str = ""  # EDS resource name; the cluster name when empty
    connect_timeout: float = 5.0  # seconds (Envoy default 5 s)
    lb_policy: LbPolicy = LbPolicy.ROUND_ROBIN
    least_request: LeastRequestConfig = field(default_factory=LeastRequestConfig)
    ring_hash: RingHashConfig = field(default_factory=RingHashConfig)
    maglev: MaglevConfig = field(default_factory=MaglevConfig)
    load_assignment: LoadAssignment | None = None
    health_checks: tuple[HealthCheck, ...] = ()
    outlier_detection: OutlierDetection | None = None
    circuit_breakers: CircuitBreakers = field(default_factory=CircuitBreakers)
    healthy_panic_threshold: float = 50.0  # percent; 0 disables panic mode
    locality_weighted_lb: bool = False  # common_lb_config.locality_weighted_lb_config
    dns_refresh_rate: float = 5.0  # seconds
    dns_lookup_family: DnsLookupFamily = DnsLookupFamily.AUTO
    upstream_tls: UpstreamTls | None = None  # transport_socket: the default for every host
    # transport_socket_matches: a per-endpoint choice by metadata (proxy.model.socket_match).
    socket_matches: tuple[TransportSocketMatch, ...] = ()
    # typed_extension_protocol_options (and the deprecated HTTP option fields), translated:
    # `.http` for the HTTP pools, `.tcp_idle_timeout` (proxy.model.protocol_options).
    protocol_options: ProtocolOptions = field(default_factory=ProtocolOptions)
    per_connection_buffer_limit_bytes: int = 1024 * 1024
    # False: start-up does not wait for this cluster to warm (Envoy wait_for_warm_on_init).
    wait_for_warm_on_init: bool = True

    @property
    def eds_resource_name(self) -> str:
        return self.eds_service_name or self.name

    def socket_for(self, endpoint: SocketMetadata | None,
                   locality: SocketMetadata | None) -> SocketChoice:
        """The transport socket of a host with this endpoint and locality metadata."""
        if not self.socket_matches:
            return SocketChoice(DEFAULT_NAME, self.upstream_tls)
        return resolve(self.socket_matches, self.upstream_tls, endpoint, locality)

    def all_transports(self) -> tuple[UpstreamTls, ...]:
        """Every TLS/PROXY transport a host of this cluster may use (SDS, stats)."""
        found = (self.upstream_tls, *(match.transport for match in self.socket_matches))
        return tuple(item for item in found if item is not None)


_CLUSTER_FIELDS = {
    "name", "type", "eds_cluster_config", "connect_timeout", "lb_policy", "load_assignment",
    "health_checks", "circuit_breakers", "outlier_detection", "common_lb_config",
    "least_request_lb_config", "ring_hash_lb_config", "maglev_lb_config", "round_robin_lb_config",
    "load_balancing_policy", "transport_socket", "typed_extension_protocol_options",
    "transport_socket_matches",
    "dns_refresh_rate",
    "dns_lookup_family", "metadata", "wait_for_warm_on_init", "per_connection_buffer_limit_bytes",
    # deprecated, said with HttpProtocolOptions when that is absent (proxy.model.protocol_options)
    "http_protocol_options", "http2_protocol_options", "common_http_protocol_options",
}  # not track_cluster_stats: it asks for timeout-budget and size histograms we do not emit
_COMMON_LB_FIELDS = {"healthy_panic_threshold", "consistent_hashing_lb_config",
                     "update_merge_window", "locality_weighted_lb_config"}


def translate_cluster(message: cluster_pb2.Cluster) -> Cluster:
    """Cluster -> model; ConfigError names the field and the cluster."""
    try:
        return _translate(message)
    except ConfigError as error:
        raise error.within(resource=message.name) from error


def _translate(message: cluster_pb2.Cluster) -> Cluster:
    if not message.name:
        raise ConfigError("a cluster needs a name", field="name")
    reject_unsupported(message, _CLUSTER_FIELDS)
    cluster_type = _discovery_type(message)
    lb = translate_lb_settings(message)
    load_assignment = _load_assignment(message, cluster_type)
    panic = _panic_threshold(message)
    upstream_tls = _upstream_tls(message)
    socket_matches = translate_socket_matches(message.transport_socket_matches)
    for transport in (upstream_tls, *(match.transport for match in socket_matches)):
        _check_health_check_support(message, transport)
    protocol_options = translate_protocol_options(message)
    _check_http3_transport(protocol_options, upstream_tls)
    if socket_matches and upstream_tls is not None and upstream_tls.quic:
        raise unsupported("transport_socket_matches", "with a QUIC (HTTP/3) transport_socket")
    return Cluster(
        name=message.name,
        type=cluster_type,
        eds_service_name=_eds_service_name(message, cluster_type),
        connect_timeout=_connect_timeout(message),
        lb_policy=lb.policy,
        least_request=lb.least_request,
        ring_hash=lb.ring_hash,
        maglev=lb.maglev,
        load_assignment=load_assignment,
        health_checks=tuple(
            _within(translate_health_check, check, f"health_checks[{index}]")
            for index, check in enumerate(message.health_checks)
        ),
        outlier_detection=(
            _within(translate_outlier_detection, message.outlier_detection, "outlier_detection")
            if message.HasField("outlier_detection") else None
        ),
        circuit_breakers=_within(translate_circuit_breakers, message.circuit_breakers,
                                 "circuit_breakers"),
        healthy_panic_threshold=panic,
        locality_weighted_lb=lb.locality_weighted,
        dns_refresh_rate=optional_seconds(message, "dns_refresh_rate", 5.0) or 5.0,
        dns_lookup_family=DnsLookupFamily(message.dns_lookup_family),
        upstream_tls=upstream_tls,
        socket_matches=socket_matches,
        protocol_options=protocol_options,
        per_connection_buffer_limit_bytes=(
            message.per_connection_buffer_limit_bytes.value
            if message.HasField("per_connection_buffer_limit_bytes") else 1024 * 1024
        ),
        wait_for_warm_on_init=(message.wait_for_warm_on_init.value
                               if message.HasField("wait_for_warm_on_init") else True),
    )


def _check_health_check_support(message: cluster_pb2.Cluster,
                                upstream_tls: UpstreamTls | None) -> None:
    if len(message.health_checks) > 1:
        # Envoy: "Multiple health checks not supported".
        raise ConfigError("only one health check per cluster is supported (as in Envoy)",
                          field="health_checks[1]")
    if upstream_tls is None or not message.health_checks:
        return
    if upstream_tls.quic:
        raise unsupported("health_checks", "health checks over QUIC")
    if upstream_tls.proxy_protocol_version is not None:
        raise unsupported("health_checks", "health checks through a PROXY protocol "
                          "transport_socket")
    if upstream_tls.ssl_context is not None and message.health_checks[0].HasField(
            "grpc_health_check"):
        raise unsupported("health_checks[0].grpc_health_check",
                          "gRPC health checks over a TLS transport_socket")


def _check_http3_transport(options: ProtocolOptions, upstream_tls: UpstreamTls | None) -> None:
    """HTTP/3 needs the QUIC transport socket and the QUIC transport socket needs HTTP/3
    (Envoy's cluster factory: "HTTP3 requires a QuicUpstreamTransport transport socket")."""
    quic = upstream_tls is not None and upstream_tls.quic
    if options.http.http3 and not quic:
        raise ConfigError("HTTP3 requires a QuicUpstreamTransport transport socket "
                          "(envoy.transport_sockets.quic)", field="transport_socket")
    if quic and not options.http.http3:
        raise ConfigError("a QuicUpstreamTransport transport socket needs "
                          "explicit_http_config.http3_protocol_options",
                          field="typed_extension_protocol_options")


def _within(translate: Any, message: Any, prefix: str) -> Any:
    try:
        return translate(message)
    except ConfigError as error:
        raise error.within(field=prefix) from error


def _discovery_type(message: cluster_pb2.Cluster) -> DiscoveryType:
    if message.type not in DiscoveryType._value2member_map_:
        raise unsupported("type", cluster_pb2.Cluster.DiscoveryType.Name(message.type))
    return DiscoveryType(message.type)


def _eds_service_name(message: cluster_pb2.Cluster, cluster_type: DiscoveryType) -> str:
    if not message.HasField("eds_cluster_config"):
        return ""
    if cluster_type is not DiscoveryType.EDS:
        raise ConfigError("only valid for type EDS", field="eds_cluster_config")
    config = message.eds_cluster_config
    if config.HasField("eds_config") and config.eds_config.WhichOneof("config_source_specifier") \
            not in ("ads", None):
        # The xDS client fetches EDS over ADS only (issue 3, start-up).
        raise unsupported("eds_cluster_config.eds_config", "only {ads: {}}")
    return config.service_name


def _connect_timeout(message: cluster_pb2.Cluster) -> float:
    if not message.HasField("connect_timeout"):
        return 5.0
    value = seconds(message.connect_timeout)
    if value <= 0:
        raise ConfigError("must be greater than 0", field="connect_timeout")
    return value









def _panic_threshold(message: cluster_pb2.Cluster) -> float:
    """common_lb_config.healthy_panic_threshold (percent, Envoy default 50; 0 disables)."""
    config = message.common_lb_config
    reject_unsupported(config, _COMMON_LB_FIELDS, prefix="common_lb_config.")
    _check_merge_window(config)
    if not config.HasField("healthy_panic_threshold"):
        return 50.0
    panic = float(config.healthy_panic_threshold.value)
    if not 0 <= panic <= 100:
        raise ConfigError("must be 0..100", field="common_lb_config.healthy_panic_threshold")
    return panic


def _check_merge_window(config: Any) -> None:
    """common_lb_config.update_merge_window (Envoy default 1 s; 0 = off). Envoy merges host
    updates that add or remove no host (health, weight, metadata) arriving within the window
    of the previous one and applies them when it ends; an update after a quiet window, or one
    changing membership, applies at once (ClusterManagerImpl::scheduleUpdate). We apply every
    update at once: exactly 0, and the default except for bursts within one second. A value
    set to anything else asks for coalescing we do not do, so it is refused by name; 1 s is
    the default written out and taken like it."""
    if not config.HasField("update_merge_window"):
        return
    if seconds(config.update_merge_window) not in (0.0, 1.0):
        raise unsupported("common_lb_config.update_merge_window",
                          "host updates apply at once: only 0s, or Envoy's default 1s")


def _load_assignment(message: cluster_pb2.Cluster,
                     cluster_type: DiscoveryType) -> LoadAssignment | None:
    if not message.HasField("load_assignment"):
        if cluster_type in (DiscoveryType.STRICT_DNS, DiscoveryType.LOGICAL_DNS):
            raise ConfigError(f"{cluster_type.name} clusters need endpoints",
                              field="load_assignment")
        return None
    if cluster_type is DiscoveryType.EDS:
        raise ConfigError("EDS clusters take endpoints from EDS", field="load_assignment")
    try:
        assignment = translate_cluster_load_assignment(message.load_assignment)
    except ConfigError as error:
        raise error.within(field="load_assignment") from error
    if cluster_type is DiscoveryType.LOGICAL_DNS and len(assignment.all_endpoints()) != 1:
        # Envoy: "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single
        # lb_endpoint".
        raise ConfigError("LOGICAL_DNS clusters need exactly one endpoint",
                          field="load_assignment")
    if cluster_type is DiscoveryType.STATIC:
        _require_ip_addresses(assignment)
    return assignment


def _require_ip_addresses(assignment: LoadAssignment) -> None:
    for index, endpoint in enumerate(assignment.all_endpoints()):
        try:
            ipaddress.ip_address(endpoint.address)
        except ValueError:
            raise ConfigError(f"STATIC endpoints need an IP address, got {endpoint.address!r}",
                              field=f"load_assignment.endpoints[*].lb_endpoints[{index}]"
                              ) from None


def _upstream_tls(message: cluster_pb2.Cluster) -> UpstreamTls | None:
    if not message.HasField("transport_socket"):
        return None
    try:
        if is_quic_upstream(message.transport_socket):
            return translate_quic_upstream_transport(message.transport_socket)
        return translate_upstream_tls(message.transport_socket)
    except ConfigError as error:
        raise error.within(field="transport_socket") from error
