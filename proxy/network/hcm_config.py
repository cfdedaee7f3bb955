"""The HTTP connection manager's config: HttpConnectionManager -> `HcmSettings`, once, at
config time (Envoy doc: configuration/http/http_conn_man and api/envoy/extensions/filters/
network/http_connection_manager/v3/http_connection_manager.proto). Fields we do not implement
and that would change behaviour are refused by name. HTTP filters are translated by their
factories (proxy.http.filter; the ones we ship register from proxy.http.filters), the inline
route configuration by proxy.model.route. The runtime is proxy.network.http_connection_manager.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, replace
from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

import proxy.http.filters  # noqa: F401  (registers the HTTP filters we ship)
from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.http.filter import ROUTER_CONFIG_TYPE, http_filter_factory
from proxy.http.local_reply_config import translate_local_reply_config
from proxy.http.settings import HcmSettings, HttpFilterConfig
from proxy.model.fields import optional_seconds, reject_unsupported
from proxy.model.route import RouteConfig, translate_route_configuration

log = logging.getLogger(__name__)

CONFIG_TYPE = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

_SUPPORTED = {
    "codec_type", "stat_prefix", "rds", "route_config", "http_filters",
    "common_http_protocol_options", "http_protocol_options", "http2_protocol_options",
    "server_name", "server_header_transformation", "max_request_headers_kb",
    "stream_idle_timeout", "request_timeout", "request_headers_timeout",
    "delayed_close_timeout", "access_log", "use_remote_address", "xff_num_trusted_hops",
    "internal_address_config", "skip_xff_append", "generate_request_id",
    "preserve_external_request_id", "upgrade_configs", "tracing", "http3_protocol_options",
    "local_reply_config",
}


@dataclass(frozen=True)
class HttpConnectionManagerConfig:
    """The translated HCM; `rds_route_config_name` tells the xDS client what to subscribe."""

    settings: HcmSettings
    outbound: bool = False  # on a listener with traffic_direction OUTBOUND

    @property
    def rds_route_config_name(self) -> str | None:
        return self.settings.rds_route_config_name

    @property
    def route_config(self) -> RouteConfig | None:
        return self.settings.route_config

    def for_outbound_listener(self) -> HttpConnectionManagerConfig:
        """This HCM on a listener with traffic_direction OUTBOUND: Envoy's tracing operation
        is then egress (ConnectionManagerTracingConfig; INBOUND and unspecified: ingress)."""
        tracing = self.settings.tracing
        if tracing is None:  # tracing from OTEL_* (docs/observability.md) is egress here too
            return replace(self, outbound=True)
        return replace(self, settings=replace(self.settings, tracing=replace(tracing, egress=True)),
                       outbound=True)


def translate_http_connection_manager(message: Message) -> HttpConnectionManagerConfig:
    m: Any = message
    reject_unsupported(m, _SUPPORTED)
    if not m.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    kind = m.WhichOneof("route_specifier")
    rds_name: str | None = None
    route_config: RouteConfig | None = None
    if kind == "rds":
        rds_name = m.rds.route_config_name
        if not rds_name:
            raise ConfigError("route_config_name is required", field="rds.route_config_name")
    elif kind == "route_config":
        try:
            route_config = translate_route_configuration(m.route_config)
        except ConfigError as error:
            raise error.within(field="route_config") from error
    else:
        raise ConfigError("rds or route_config is required", field="route_specifier")
    settings = HcmSettings(
        stat_prefix=m.stat_prefix,
        codec_type=hcm_pb2.HttpConnectionManager.CodecType.Name(m.codec_type),  # type: ignore
        rds_route_config_name=rds_name,
        route_config=route_config,
        use_remote_address=m.use_remote_address.value,
        xff_num_trusted_hops=m.xff_num_trusted_hops,
        skip_xff_append=m.skip_xff_append,
        generate_request_id=m.generate_request_id.value
        if m.HasField("generate_request_id") else True,
        preserve_external_request_id=m.preserve_external_request_id,
        server_name=m.server_name or "envoy",
        server_header=hcm_pb2.HttpConnectionManager.ServerHeaderTransformation.Name(  # type: ignore
            m.server_header_transformation),
        max_request_headers_kb=m.max_request_headers_kb.value
        if m.HasField("max_request_headers_kb") else 60,
        request_headers_timeout=optional_seconds(m, "request_headers_timeout", None),
        stream_idle_timeout=optional_seconds(m, "stream_idle_timeout", 300.0),
        delayed_close_timeout=optional_seconds(m, "delayed_close_timeout", 1.0),
        request_timeout=optional_seconds(m, "request_timeout", None),
        upgrades=_upgrades(m),
    )
    if settings.codec_type not in ("AUTO", "HTTP1", "HTTP2", "HTTP3"):
        raise unsupported("codec_type", settings.codec_type)
    settings = _protocol_options(m, settings)
    settings = _internal_addresses(m, settings)
    settings = _filters(m, settings)
    if m.HasField("local_reply_config"):
        try:
            mappers = translate_local_reply_config(m.local_reply_config)
        except ConfigError as error:
            raise error.within(field="local_reply_config") from error
        settings = replace(settings, local_reply_mappers=mappers)
    if m.access_log:
        from proxy.observability.access_log.config import translate_access_logs

        settings = replace(settings, access_logs=translate_access_logs(m.access_log))
    if m.HasField("tracing"):
        from proxy.observability.tracing.config import translate_tracing

        try:
            tracing = translate_tracing(m.tracing)
            if settings.router_start_child_span:
                # The router's start_child_span (deprecated in Envoy in favour of
                # tracing.spawn_upstream_span) asks for the same per-attempt CLIENT spans.
                tracing = replace(tracing, spawn_upstream_span=True)
            settings = replace(settings, tracing=tracing)
        except ConfigError as error:
            raise error.within(field="tracing") from error
    return HttpConnectionManagerConfig(settings)


def _upgrades(m: Any) -> frozenset[str]:
    enabled = set()
    for index, config in enumerate(m.upgrade_configs):
        reject_unsupported(config, {"upgrade_type", "enabled"},
                       prefix=f"upgrade_configs[{index}].")
        kind = config.upgrade_type.lower()
        if kind not in ("websocket", "connect"):
            raise unsupported(f"upgrade_configs[{index}].upgrade_type", kind)
        if not config.HasField("enabled") or config.enabled.value:
            enabled.add(kind)
    return frozenset(enabled)


def _protocol_options(m: Any, settings: HcmSettings) -> HcmSettings:
    common = m.common_http_protocol_options
    reject_unsupported(common, {"idle_timeout", "max_headers_count"},
                       prefix="common_http_protocol_options.")
    h1 = m.http_protocol_options
    reject_unsupported(h1, {"accept_http_10", "default_host_for_http_10", "allow_absolute_url",
                 "enable_trailers"},
                       prefix="http_protocol_options.")
    # HTTP/3's transport settings are the QUIC listener's (proxy.model.quic); of
    # Http3ProtocolOptions we take none yet, so any field set is refused by name.
    reject_unsupported(m.http3_protocol_options, (), prefix="http3_protocol_options.")
    h2 = m.http2_protocol_options
    reject_unsupported(h2, {"max_concurrent_streams", "initial_stream_window_size",
                 "initial_connection_window_size", "hpack_table_size", "allow_connect"},
                       prefix="http2_protocol_options.")
    return replace(
        settings,
        idle_timeout=optional_seconds(common, "idle_timeout", 3600.0),
        max_headers_count=common.max_headers_count.value
        if common.HasField("max_headers_count") else 100,
        accept_http_10=h1.accept_http_10,
        default_host_for_http_10=h1.default_host_for_http_10,
        allow_absolute_url=h1.allow_absolute_url.value
        if h1.HasField("allow_absolute_url") else True,
        http1_enable_trailers=h1.enable_trailers,
        max_concurrent_streams=h2.max_concurrent_streams.value
        if h2.HasField("max_concurrent_streams") else settings.max_concurrent_streams,
        initial_stream_window_size=min(h2.initial_stream_window_size.value, 2**31 - 1)
        if h2.HasField("initial_stream_window_size") else settings.initial_stream_window_size,
        initial_connection_window_size=min(h2.initial_connection_window_size.value, 2**31 - 1)
        if h2.HasField("initial_connection_window_size")
        else settings.initial_connection_window_size,
        hpack_table_size=h2.hpack_table_size.value if h2.HasField("hpack_table_size") else None,
        allow_connect=h2.allow_connect,
    )


def _internal_addresses(m: Any, settings: HcmSettings) -> HcmSettings:
    if not m.HasField("internal_address_config"):
        return settings
    config = m.internal_address_config
    reject_unsupported(config, {"cidr_ranges", "unix_sockets"},
                       prefix="internal_address_config.")
    networks = []
    for index, cidr in enumerate(config.cidr_ranges):
        try:
            networks.append(ipaddress.ip_network(
                f"{cidr.address_prefix}/{cidr.prefix_len.value}", strict=False))
        except ValueError as error:
            raise ConfigError(str(error),
                              field=f"internal_address_config.cidr_ranges[{index}]") from error
    return replace(settings, internal_networks=tuple(networks))


def _filters(m: Any, settings: HcmSettings) -> HcmSettings:
    """http_filters: ours in order, then Envoy's router, which must come last. None at all is
    accepted as Envoy 1.40 accepts it: there is no router then, and requests stay unanswered
    until the stream idle timeout (proxy.http.active_stream)."""
    if not m.http_filters:
        log.warning("HCM %s has no http_filters: without a router its requests get no "
                    "answer until a timeout (as in Envoy)", settings.stat_prefix)
        return replace(settings, has_router=False)
    configs: list[HttpFilterConfig] = []
    suppress = child_spans = False
    last = len(m.http_filters) - 1
    for index, http_filter in enumerate(m.http_filters):
        where = f"http_filters[{index}]"
        try:
            typed = _http_filter_config(http_filter)
            type_name = typed.DESCRIPTOR.full_name
            if type_name == ROUTER_CONFIG_TYPE:
                if index != last:
                    # Envoy: "terminal filter named X of type Y must be the last filter in a
                    # http filter chain".
                    raise ConfigError(f"the router {http_filter.name!r} must be the last "
                                      "HTTP filter", field="name")
                suppress, child_spans = _router(typed)
                continue
            factory = http_filter_factory(type_name, http_filter.name)
            if index == last:
                # Envoy: "non-terminal filter named X of type Y is the last filter in a http
                # filter chain".
                raise ConfigError(f"HTTP filter {http_filter.name!r} ({type_name}) is the last "
                                  "HTTP filter: the last must be envoy.filters.http.router",
                                  field="name")
            configs.append(HttpFilterConfig(http_filter.name, type_name,
                                            factory.translate(typed)))
        except ConfigError as error:
            raise error.within(field=where) from error
    return replace(settings, http_filters=tuple(configs), suppress_envoy_headers=suppress,
                   router_start_child_span=child_spans)


def _http_filter_config(http_filter: Any) -> Message:
    reject_unsupported(http_filter, {"name", "typed_config"})
    if not http_filter.HasField("typed_config"):
        # Envoy 1.40: "Didn't find a registered implementation for 'NAME' with type URL: ''".
        raise ConfigError(f"HTTP filter {http_filter.name!r} needs a typed_config (Envoy finds "
                          "no implementation by name alone)", field="typed_config")
    return unpack_any(http_filter.typed_config)


def _router(typed: Any) -> tuple[bool, bool]:
    """The router's config: (suppress_envoy_headers, start_child_span)."""
    reject_unsupported(typed, {"suppress_envoy_headers", "dynamic_stats", "start_child_span"},
                       prefix="typed_config.")
    if typed.HasField("dynamic_stats") and not typed.dynamic_stats.value:
        # Envoy then skips per-status cluster stats; we always keep them.
        raise unsupported("typed_config.dynamic_stats", "only true (the default)")
    return bool(typed.suppress_envoy_headers), bool(typed.start_child_span)
