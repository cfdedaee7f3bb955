"""The HTTP connection manager's settings, translated once from HttpConnectionManager."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

from proxy.model.route import RouteConfig

CodecType = Literal["AUTO", "HTTP1", "HTTP2", "HTTP3"]  # HTTP3: QUIC listeners only
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Envoy 1.40 treats no address as internal unless internal_address_config lists CIDR ranges
# (runtime feature explicit_internal_address_config; verified against Envoy in
# tests/conformance/proxy/http/test_routing_vs_envoy.py).
DEFAULT_INTERNAL: tuple[Network, ...] = ()


@dataclass(frozen=True)
class HttpFilterConfig:
    name: str
    config_type: str
    config: Any


@dataclass(frozen=True)
class HcmSettings:
    stat_prefix: str
    codec_type: CodecType = "AUTO"
    rds_route_config_name: str | None = None
    route_config: RouteConfig | None = None
    http_filters: tuple[HttpFilterConfig, ...] = ()
    # False for an HCM without http_filters: Envoy 1.40 then has no router and leaves each
    # request unanswered until a timeout (proxy.http.active_stream).
    has_router: bool = True
    suppress_envoy_headers: bool = False  # from the router filter's config
    router_start_child_span: bool = False  # the router's start_child_span (CLIENT spans)
    use_remote_address: bool = False
    xff_num_trusted_hops: int = 0
    skip_xff_append: bool = False
    generate_request_id: bool = True
    preserve_external_request_id: bool = False
    internal_networks: tuple[Network, ...] = DEFAULT_INTERNAL
    server_name: str = "envoy"
    server_header: Literal["OVERWRITE", "APPEND_IF_ABSENT", "PASS_THROUGH"] = "OVERWRITE"
    max_request_headers_kb: int = 60
    max_headers_count: int = 100
    idle_timeout: float | None = 3600.0  # connection idle (common_http_protocol_options)
    request_headers_timeout: float | None = None
    stream_idle_timeout: float | None = 300.0
    # HCM delayed_close_timeout (Envoy default 1 s, 0 = off): after we start closing, wait
    # that long for the client to close first (reading and dropping what it still sends).
    delayed_close_timeout: float | None = 1.0
    request_timeout: float | None = None
    # Http2ProtocolOptions as Envoy 1.40 applies them when unset (its SETTINGS, measured in
    # tests/conformance/proxy/http/test_h2_protocol_vs_envoy.py): 1024 streams, 16 MiB per stream,
    # 24 MiB per connection; hpack_table_size None: RFC 7541's 4096, not advertised.
    max_concurrent_streams: int = 1024
    initial_stream_window_size: int = 16 * 1024 * 1024
    initial_connection_window_size: int = 24 * 1024 * 1024
    hpack_table_size: int | None = None
    # Http2ProtocolOptions.allow_connect: advertise SETTINGS_ENABLE_CONNECT_PROTOCOL and take
    # RFC 8441 extended CONNECT (WebSocket over HTTP/2; docs arch_overview/http/upgrades).
    allow_connect: bool = False
    accept_http_10: bool = False
    default_host_for_http_10: str = ""
    # Http1ProtocolOptions.allow_absolute_url (Envoy's HCM default: true): take the host and
    # path from an absolute-form target (RFC 9112 3.2.2); false keeps the target as :path.
    allow_absolute_url: bool = True
    http1_enable_trailers: bool = False  # http_protocol_options.enable_trailers
    upgrades: frozenset[str] = field(default_factory=frozenset)
    access_logs: tuple[Any, ...] = ()
    # local_reply_config: headers added to local replies by response flag
    local_reply_mappers: tuple[Any, ...] = ()  # proxy.http.local_reply_config.LocalReplyMapper
    tracing: Any = None  # proxy.observability.tracing.config.TracingConfig

    @property
    def max_header_bytes(self) -> int:
        return self.max_request_headers_kb * 1024
