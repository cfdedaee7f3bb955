"""An Envoy v3 bootstrap file (YAML or JSON) -> the sidecar's typed start-up config.

Supported (issue 3, start-up): `node` (id, cluster, locality, metadata), `admin.address`,
`static_resources.listeners` / `.clusters` / `.secrets` (static secrets that TLS contexts name),
`stats_sinks` (envoy.stat_sinks.open_telemetry) with `stats_flush_interval`, and
`dynamic_resources.ads_config` (`api_type` GRPC, state of the world, or DELTA_GRPC,
incremental; `envoy_grpc` naming a static cluster, its `retry_policy.retry_back_off` setting
the reconnect backoff) with `lds_config` / `cds_config` `{ads: {}}`. Anything else that
would change behaviour stops start-up with a ConfigError naming the field.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import json_format

from protos.errors import ConfigError, unsupported
from protos.loader import parse_message, read_document
from proxy.context import NodeInfo
from proxy.model.cluster import Cluster, DiscoveryType, translate_cluster
from proxy.model.fields import enum_name, reject_unsupported, seconds
from proxy.model.http_clusters import inline_route_configs, refuse_proxy_protocol_routes
from proxy.model.listener import Listener, translate_listener, translate_socket_address
from proxy.model.secret import set_static_secrets, translate_secret
from proxy.observability.collectors import collector_uses, refuse_tls_collectors
from proxy.readiness.probe import ProbeSettings, probe_from_metadata
from proxy.xds.backoff import BackoffSettings

log = logging.getLogger(__name__)

_BOOTSTRAP_FIELDS = {"node", "static_resources", "dynamic_resources", "admin", "stats_sinks",
                     "stats_flush_interval"}
# ApiConfigSource.api_type for ads_config: state of the world or incremental, over gRPC.
_API_TYPES = frozenset({config_source_pb2.ApiConfigSource.GRPC,
                        config_source_pb2.ApiConfigSource.DELTA_GRPC})
_NODE_FIELDS = {"id", "cluster", "metadata", "locality", "user_agent_name",
                "user_agent_version", "client_features"}


@dataclass(frozen=True)
class AdsConfig:
    """ADS over gRPC to the static cluster `cluster_name`; which types come over it."""

    cluster_name: str
    lds: bool
    cds: bool
    target: str = ""  # HOST:PORT of the cluster's first endpoint (gRPC resolves names)
    # every endpoint of the cluster: a new stream goes to the next (several control planes)
    targets: tuple[str, ...] = ()
    tls: Any = None  # the cluster's UpstreamTls, None for plaintext
    initial_fetch_timeout: float = 15.0  # Envoy's ConfigSource default; 0: wait forever
    node_on_every_request: bool = True  # not set_node_on_first_message_only
    delta: bool = False  # api_type DELTA_GRPC: incremental xDS (proxy.xds.delta)
    # the reconnect backoff (Envoy: 500 ms, 30 s)
    backoff: BackoffSettings = field(default_factory=BackoffSettings)
    # GrpcService.initial_metadata: sent with the stream (a join token, docs/security.md)
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Bootstrap:
    node: NodeInfo
    node_proto: base_pb2.Node = field(compare=False, repr=False)
    admin_address: tuple[str, int] | None = None
    listeners: tuple[Listener, ...] = ()
    clusters: tuple[Cluster, ...] = ()
    ads: AdsConfig | None = None
    source: str = ""
    message: bootstrap_pb2.Bootstrap = field(default_factory=bootstrap_pb2.Bootstrap,
                                             compare=False, repr=False)
    stats_sinks: tuple[Any, ...] = ()  # proxy.observability.stat_sink.StatSinkConfig
    stats_flush_interval: float = 5.0  # Envoy's default
    # node.metadata.readiness_probe: the application's probe, reported over ADS (proxy/readiness)
    readiness: ProbeSettings | None = None


def ensure_network_filters() -> None:
    """Register every network filter factory we ship (tcp_proxy, rbac; the HCM if present)."""
    importlib.import_module("proxy.network.tcp_proxy")
    importlib.import_module("proxy.network.rbac")
    with contextlib.suppress(ModuleNotFoundError):
        importlib.import_module("proxy.network.http_connection_manager")


def load_bootstrap(path: Path) -> Bootstrap:
    source = str(path)
    document = read_document(path)
    message = parse_message(document or {}, bootstrap_pb2.Bootstrap, source=source)
    try:
        return translate_bootstrap(message, source=source)
    except ConfigError as error:
        raise error.within(source=source) from error


def translate_bootstrap(message: bootstrap_pb2.Bootstrap, *, source: str = "") -> Bootstrap:
    ensure_network_filters()
    reject_unsupported(message, _BOOTSTRAP_FIELDS)
    reject_unsupported(message.node, _NODE_FIELDS, prefix="node.")
    statics = message.static_resources
    reject_unsupported(statics, {"listeners", "clusters", "secrets"},
                       prefix="static_resources.")
    secrets = _each(translate_secret, statics.secrets, "static_resources.secrets")
    _check_unique([item.name for item in secrets], "static_resources.secrets")
    set_static_secrets(secrets)  # listeners and clusters may name them
    listeners = tuple(_each(_static_listener, statics.listeners, "static_resources.listeners"))
    clusters = tuple(_each(translate_cluster, statics.clusters, "static_resources.clusters"))
    _check_unique([item.name for item in listeners], "static_resources.listeners")
    _check_unique([item.name for item in clusters], "static_resources.clusters")
    sinks = _stats_sinks(message)
    by_name = {cluster.name: cluster for cluster in clusters}
    refuse_tls_collectors(collector_uses(listeners, sinks), by_name)
    refuse_proxy_protocol_routes(inline_route_configs(listeners), by_name)
    ads = None
    if message.HasField("dynamic_resources"):
        ads = _translate_dynamic(message.dynamic_resources, {c.name: c for c in clusters})
    if ads is None:
        _check_no_ads_needed(listeners, clusters)
    readiness = _readiness(message.node, ads)
    return Bootstrap(
        node=_node_info(message.node),
        node_proto=message.node,
        readiness=readiness,
        admin_address=_admin_address(message),
        listeners=listeners,
        clusters=clusters,
        ads=ads,
        source=source,
        message=message,
        stats_sinks=sinks,
        stats_flush_interval=(seconds(message.stats_flush_interval)
                              if message.HasField("stats_flush_interval") else 5.0),
    )


def _static_listener(message: listener_pb2.Listener) -> Listener:
    """A static listener; Envoy names one without a `name` with a random UUID
    (ListenerManagerImpl::addOrUpdateListener). Its stats use the address either way."""
    return translate_listener(message, name=message.name or str(uuid.uuid4()))


def _stats_sinks(message: bootstrap_pb2.Bootstrap) -> tuple[Any, ...]:
    """`stats_sinks`: envoy.stat_sinks.open_telemetry, translated by proxy.observability."""
    if not message.stats_sinks:
        return ()
    from proxy.observability.stat_sink import translate_stats_sinks

    return translate_stats_sinks(message.stats_sinks)


def _check_no_ads_needed(listeners: tuple[Listener, ...], clusters: tuple[Cluster, ...]) -> None:
    """RDS and EDS come over ADS only: without ads_config they would never arrive and the
    sidecar would never become ready, so refuse at start-up as Envoy does."""
    for index, listener in enumerate(listeners):
        if listener.rds_route_config_names:
            raise ConfigError("RDS needs dynamic_resources.ads_config",
                              field=f"static_resources.listeners[{index}]",
                              resource=listener.name)
    for index, cluster in enumerate(clusters):
        if cluster.type is DiscoveryType.EDS:
            raise ConfigError("an EDS cluster needs dynamic_resources.ads_config",
                              field=f"static_resources.clusters[{index}].type",
                              resource=cluster.name)


def _each(translate: Any, items: Any, prefix: str) -> list[Any]:
    result = []
    for index, item in enumerate(items):
        try:
            result.append(translate(item))
        except ConfigError as error:
            raise error.within(field=f"{prefix}[{index}]") from error
    return result


def _check_unique(names: list[str], field_name: str) -> None:
    seen: set[str] = set()
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"duplicate name {name!r}", field=f"{field_name}[{index}].name")
        seen.add(name)


def _readiness(node: base_pb2.Node, ads: AdsConfig | None) -> ProbeSettings | None:
    """Pointsman's own node metadata (docs/mesh.md, "Application readiness"); Envoy ignores
    node metadata, so `pointsman sidecar --proxy envoy` refuses --readiness-port."""
    metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
    settings = probe_from_metadata(metadata)
    if settings is not None and ads is None:
        raise ConfigError("a readiness probe is reported over ADS: dynamic_resources."
                          "ads_config is required", field="node.metadata.readiness_probe")
    return settings


def _node_info(node: base_pb2.Node) -> NodeInfo:
    locality = node.locality
    return NodeInfo(
        id=node.id,
        cluster=node.cluster,
        metadata=json_format.MessageToDict(node.metadata),
        locality=(locality.region, locality.zone, locality.sub_zone),
    )


def _admin_address(message: bootstrap_pb2.Bootstrap) -> tuple[str, int] | None:
    if not message.HasField("admin"):
        return None
    admin = message.admin
    reject_unsupported(admin, {"address", "access_log_path"}, prefix="admin.")
    if admin.access_log_path not in ("", "/dev/null"):
        raise unsupported("admin.access_log_path", "admin access logs")
    if not admin.HasField("address"):
        return None
    return translate_socket_address(admin.address, "admin.address")


def _translate_dynamic(dynamic: Any, static_clusters: dict[str, Cluster]) -> AdsConfig | None:
    reject_unsupported(dynamic, {"ads_config", "lds_config", "cds_config"},
                       prefix="dynamic_resources.")
    lds = _over_ads(dynamic, "lds_config")
    cds = _over_ads(dynamic, "cds_config")
    if not dynamic.HasField("ads_config"):
        if lds or cds:
            raise ConfigError("{ads: {}} needs dynamic_resources.ads_config",
                              field="dynamic_resources.ads_config")
        return None
    ads = dynamic.ads_config
    prefix = "dynamic_resources.ads_config."
    reject_unsupported(ads, {"api_type", "transport_api_version", "grpc_services",
                             "set_node_on_first_message_only"}, prefix=prefix)
    if ads.api_type not in _API_TYPES:
        raise unsupported(prefix + "api_type",
                          f"{enum_name(ads, 'api_type')}: GRPC or DELTA_GRPC only")
    if len(ads.grpc_services) != 1:
        raise ConfigError("exactly one grpc_services entry is required",
                          field=prefix + "grpc_services")
    service = ads.grpc_services[0]
    reject_unsupported(service, {"envoy_grpc", "timeout", "initial_metadata"},
                       prefix=prefix + "grpc_services[0].")
    metadata = _initial_metadata(service, prefix + "grpc_services[0].initial_metadata")
    if not service.HasField("envoy_grpc"):
        raise unsupported(prefix + "grpc_services[0].google_grpc", "envoy_grpc only")
    reject_unsupported(service.envoy_grpc, {"cluster_name", "retry_policy"},
                       prefix=prefix + "grpc_services[0].envoy_grpc.")
    cluster_name = service.envoy_grpc.cluster_name
    field_name = prefix + "grpc_services[0].envoy_grpc.cluster_name"
    cluster = static_clusters.get(cluster_name)
    if cluster is None:
        raise ConfigError(f"{cluster_name!r} is not a static cluster", field=field_name)
    endpoints = [endpoint for group in (cluster.load_assignment.localities
                                        if cluster.load_assignment else ())
                 for endpoint in group.endpoints]
    if not endpoints:
        raise ConfigError(f"cluster {cluster_name!r} needs an inline endpoint", field=field_name)
    if cluster.upstream_tls is not None and cluster.upstream_tls.proxy_protocol_version:
        # gRPC opens the ADS channel itself and sends no PROXY header.
        raise unsupported(field_name, f"cluster {cluster_name!r} has an upstream PROXY "
                          "protocol transport_socket, which the ADS client does not send")
    if cluster.socket_matches:
        # One gRPC channel, one transport: a per-endpoint socket would be ignored.
        raise unsupported(field_name, f"cluster {cluster_name!r} has transport_socket_matches, "
                          "which the ADS gRPC channel does not apply per endpoint")
    targets = tuple(f"[{item.address}]:{item.port}" if ":" in item.address
                    else f"{item.address}:{item.port}" for item in endpoints)
    return AdsConfig(cluster_name=cluster_name, lds=lds, cds=cds, target=targets[0],
                     targets=targets,
                     tls=cluster.upstream_tls,
                     initial_fetch_timeout=_initial_fetch_timeout(dynamic),
                     node_on_every_request=not ads.set_node_on_first_message_only,
                     delta=ads.api_type == config_source_pb2.ApiConfigSource.DELTA_GRPC,
                     metadata=metadata,
                     backoff=_ads_backoff(service.envoy_grpc,
                                          prefix + "grpc_services[0].envoy_grpc.retry_policy."))


def _initial_metadata(service: Any, field_name: str) -> tuple[tuple[str, str], ...]:
    """GrpcService.initial_metadata: HeaderValue pairs (keys lower case, as gRPC wants)."""
    pairs = []
    for index, item in enumerate(service.initial_metadata):
        reject_unsupported(item, {"key", "value"}, prefix=f"{field_name}[{index}].")
        key = item.key.lower()
        if not key or key.startswith(":") or key.endswith("-bin"):
            raise ConfigError(f"{item.key!r} cannot be sent as metadata",
                              field=f"{field_name}[{index}].key")
        pairs.append((key, item.value))
    return tuple(pairs)


def _ads_backoff(envoy_grpc: Any, prefix: str) -> BackoffSettings:
    """GrpcService.EnvoyGrpc.retry_policy: "the retry policy for re-establishing the gRPC
    stream ... Currently only supported for xDS gRPC streams"; Envoy reads only its
    retry_back_off there (Config::Utility::prepareJitteredExponentialBackOffStrategy)."""
    if not envoy_grpc.HasField("retry_policy"):
        return BackoffSettings()
    policy = envoy_grpc.retry_policy
    unused = [descriptor.name for descriptor, _ in policy.ListFields()
              if descriptor.name != "retry_back_off"]
    if unused:
        log.warning("%s%s: not used for the ADS stream (Envoy reads only retry_back_off there)",
                    prefix, ", ".join(unused))
    if not policy.HasField("retry_back_off"):
        return BackoffSettings()
    return _backoff_strategy(policy.retry_back_off, prefix + "retry_back_off.")


def _backoff_strategy(backoff: Any, prefix: str) -> BackoffSettings:
    """config.core.v3.BackoffStrategy in whole milliseconds, as Envoy reads it: base_interval
    required and at least 1 ms, max_interval > 0 and 10 x base when unset, not below base."""
    if not backoff.HasField("base_interval"):
        raise ConfigError("base_interval is required", field=prefix + "base_interval")
    base = _milliseconds(backoff.base_interval)
    if base < 1:
        raise ConfigError("must be at least 1ms", field=prefix + "base_interval")
    if not backoff.HasField("max_interval"):
        return BackoffSettings(base, base * 10)
    maximum = _milliseconds(backoff.max_interval)
    if maximum <= 0:
        raise ConfigError("must be greater than 0", field=prefix + "max_interval")
    if maximum < base:
        raise ConfigError("max_interval must be greater than or equal to the base_interval",
                          field=prefix + "max_interval")
    return BackoffSettings(base, maximum)


def _milliseconds(duration: Any) -> int:
    return int(duration.seconds * 1000 + duration.nanos // 1_000_000)


def _initial_fetch_timeout(dynamic: Any) -> float:
    """The longest initial_fetch_timeout of cds_config / lds_config (Envoy: 15 s default;
    0 disables the timeout, so initialization waits for the first responses)."""
    values = []
    for name in ("cds_config", "lds_config"):
        if dynamic.HasField(name):
            source = getattr(dynamic, name)
            values.append(seconds(source.initial_fetch_timeout)
                          if source.HasField("initial_fetch_timeout") else 15.0)
    if not values:
        return 15.0
    return 0.0 if 0.0 in values else max(values)


def _over_ads(dynamic: Any, name: str) -> bool:
    if not dynamic.HasField(name):
        return False
    source = getattr(dynamic, name)
    reject_unsupported(source, {"ads", "resource_api_version", "initial_fetch_timeout"},
                       prefix=f"dynamic_resources.{name}.")
    if not source.HasField("ads"):
        raise unsupported(f"dynamic_resources.{name}", "only {ads: {}}")
    return True
