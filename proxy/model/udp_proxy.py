"""`envoy.filters.udp_listener.udp_proxy` config -> frozen model (UdpProxyConfig).

Envoy doc: configuration/listeners/udp_filters/udp_proxy and
api/envoy/extensions/filters/udp/udp_proxy/v3/udp_proxy.proto. Supported fields:

- `stat_prefix` (required): stats under `udp.<stat_prefix>.`.
- `cluster` (deprecated in Envoy, still accepted): the cluster every datagram goes to; or
  `matcher` (proxy.model.udp_matcher): a cluster chosen by the client's or the listener's
  address and port, with Route actions.
- `idle_timeout` (default 60 s): a session with no datagram either way for this long ends.
- `hash_policies` (at most one, as Envoy's validation): `source_ip` (xxHash64 of the client's
  IP as text) or `key` (xxHash64 of the key): the hash the cluster's RING_HASH/MAGLEV uses.
- `use_per_packet_load_balancing`: a host is picked for every datagram (sessions are then kept
  per client and host).
- `upstream_socket_config.max_rx_datagram_size` (default 1500): larger upstream replies are
  truncated by the kernel and dropped.
- `access_log`: one record per session when it ends (Envoy's UDP session access log).

`use_original_src_ip: true`, `session_filters`, `tunneling_config`, `proxy_access_log`,
`access_log_options` and `upstream_socket_config.prefer_gro` are refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envoy.extensions.filters.udp.udp_proxy.v3 import udp_proxy_pb2
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.model.fields import reject_unsupported, seconds
from proxy.model.udp_matcher import UdpMatcher, translate_matcher

CONFIG_TYPE = "envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig"
DEFAULT_IDLE_TIMEOUT = 60.0  # udp_proxy.proto: "If not specified, defaults to 1 minute"
# udp_socket_config.proto: max_rx_datagram_size "defaults to 1500 bytes".
DEFAULT_MAX_RX_DATAGRAM_SIZE = 1500

_FIELDS = {
    "stat_prefix", "cluster", "matcher", "idle_timeout", "hash_policies",
    "use_per_packet_load_balancing", "access_log", "upstream_socket_config",
    "use_original_src_ip",
}


@dataclass(frozen=True)
class UdpHashPolicy:
    """One of `source_ip` (hash the client's IP) or a fixed `key`."""

    source_ip: bool = False
    key: str = ""


@dataclass(frozen=True)
class UdpProxyConfig:
    stat_prefix: str
    cluster: str  # "" with a matcher
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    hash_policy: UdpHashPolicy | None = None
    per_packet_load_balancing: bool = False
    upstream_max_rx_datagram_size: int = DEFAULT_MAX_RX_DATAGRAM_SIZE
    access_logs: tuple[Any, ...] = ()  # proxy.observability AccessLogConfig
    matcher: UdpMatcher | None = None

    def route(self, source: tuple[str, int], destination: tuple[str, int]) -> str | None:
        """The cluster of a datagram from `source` to the listener's `destination`."""
        if self.matcher is None:
            return self.cluster
        return self.matcher.route(source, destination)


def translate_udp_proxy(message: Message) -> UdpProxyConfig:
    """UdpProxyConfig proto -> model; ConfigError names the field (relative to typed_config)."""
    assert isinstance(message, udp_proxy_pb2.UdpProxyConfig)
    reject_unsupported(message, _FIELDS)
    if message.use_original_src_ip:
        raise unsupported("use_original_src_ip", "needs IP_TRANSPARENT and CAP_NET_ADMIN")
    if not message.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    idle = DEFAULT_IDLE_TIMEOUT
    if message.HasField("idle_timeout"):
        idle = seconds(message.idle_timeout)
    cluster, matcher = _route(message)
    return UdpProxyConfig(
        stat_prefix=message.stat_prefix,
        cluster=cluster,
        matcher=matcher,
        idle_timeout=idle,
        hash_policy=_hash_policy(message.hash_policies),
        per_packet_load_balancing=message.use_per_packet_load_balancing,
        upstream_max_rx_datagram_size=_upstream_datagram_size(message),
        access_logs=_access_logs(message),
    )


def _route(message: udp_proxy_pb2.UdpProxyConfig) -> tuple[str, UdpMatcher | None]:
    kind = message.WhichOneof("route_specifier")
    if kind == "cluster":
        if not message.cluster:
            raise ConfigError("a cluster name is required", field="cluster")
        return message.cluster, None
    if kind == "matcher":
        return "", translate_matcher(message.matcher)
    raise ConfigError("one of cluster or matcher is required", field="cluster")


def _hash_policy(policies: Any) -> UdpHashPolicy | None:
    if not policies:
        return None
    if len(policies) > 1:  # udp_proxy.proto: hash_policies max_items 1
        raise ConfigError("at most one hash policy", field="hash_policies")
    policy = policies[0]
    kind = policy.WhichOneof("policy_specifier")
    if kind == "source_ip":
        if not policy.source_ip:  # udp_proxy.proto: source_ip const true
            raise ConfigError("source_ip must be true", field="hash_policies[0].source_ip")
        return UdpHashPolicy(source_ip=True)
    if kind == "key":
        if not policy.key:
            raise ConfigError("key must not be empty", field="hash_policies[0].key")
        return UdpHashPolicy(key=policy.key)
    raise ConfigError("a hash policy needs source_ip or key", field="hash_policies[0]")


def _upstream_datagram_size(message: udp_proxy_pb2.UdpProxyConfig) -> int:
    if not message.HasField("upstream_socket_config"):
        return DEFAULT_MAX_RX_DATAGRAM_SIZE
    return translate_socket_config(message.upstream_socket_config, "upstream_socket_config")


def translate_socket_config(config: Any, where: str) -> int:
    """A UdpSocketConfig -> its max_rx_datagram_size (prefer_gro, a kernel receive offload
    that changes how datagrams are batched, is refused)."""
    reject_unsupported(config, {"max_rx_datagram_size"}, prefix=f"{where}.")
    if not config.HasField("max_rx_datagram_size"):
        return DEFAULT_MAX_RX_DATAGRAM_SIZE
    size = config.max_rx_datagram_size.value
    if not 0 < size < 65536:  # udp_socket_config.proto: gt 0, lt 65536
        raise ConfigError("must be between 1 and 65535", field=f"{where}.max_rx_datagram_size")
    return size


def _access_logs(message: Any) -> tuple[Any, ...]:
    if not message.access_log:
        return ()
    from proxy.observability.access_log.config import translate_access_logs

    return translate_access_logs(message.access_log, field="access_log")
