"""Upstream HTTP connection pools, one per (cluster, host, protocol), owned by a PoolManager.

The protocol comes from the cluster's `typed_extension_protocol_options`
`envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (explicit HTTP/1.1 or HTTP/2; for
`auto_config`, what TLS ALPN negotiates: proxy.upstream.pools.auto; HTTP/1.1 without TLS),
HTTP/1.1 when absent, as in Envoy.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any

from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from protos.errors import ConfigError, unsupported
from proxy.upstream.host import Host
from proxy.upstream.pools.auto import AutoPool
from proxy.upstream.pools.base import (
    ConnectFailedError,
    PoolOverflowError,
    UpstreamStream,
)
from proxy.upstream.pools.http1 import Http1Pool
from proxy.upstream.pools.http2 import ENVOY_DEFAULT_WINDOWS, Http2Pool, Http2Windows

log = logging.getLogger(__name__)

__all__ = ["ConnectFailedError", "PoolManager", "PoolOverflowError", "UpstreamProtocol",
           "UpstreamStream", "upstream_protocol"]

PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True)
class UpstreamProtocol:
    http2: bool = False
    auto: bool = False
    max_concurrent_streams: int | None = None  # our own cap on top of the peer's SETTINGS
    idle_timeout: float | None = 3600.0  # Envoy common_http_protocol_options.idle_timeout: 1h
    http1_trailers: bool = False  # http_protocol_options.enable_trailers (HTTP/1.1 upstreams)
    http2_windows: Http2Windows = ENVOY_DEFAULT_WINDOWS  # http2_protocol_options windows, HPACK


_CACHE: dict[int, tuple[Any, UpstreamProtocol]] = {}

_OPTIONS_FIELD = f"typed_extension_protocol_options[{PROTOCOL_OPTIONS}]"
# What we honour inside HttpProtocolOptions; anything else set is refused by name.
_COMMON_FIELDS = {"idle_timeout"}
_HTTP1_FIELDS = {"enable_trailers"}
_HTTP2_FIELDS = {"max_concurrent_streams", "initial_stream_window_size",
                 "initial_connection_window_size", "hpack_table_size"}


def upstream_protocol(cluster: Any) -> UpstreamProtocol:
    """The HTTP protocol settings of a `proxy.model.cluster.Cluster`, cached per model."""
    cached = _CACHE.get(id(cluster))
    if cached is not None and cached[0] is cluster:
        return cached[1]
    if len(_CACHE) > 4096:
        _CACHE.clear()
    protocol = _translate_protocol(cluster)
    _CACHE[id(cluster)] = (cluster, protocol)
    return protocol


def validate_protocol_options(cluster: Any) -> None:
    """Raise ConfigError naming the field if the cluster's HttpProtocolOptions set anything
    the pools do not implement."""
    _translate_protocol(cluster)


def _refuse_unknown(message: Any, allowed: set[str], prefix: str) -> None:
    for descriptor, _ in message.ListFields():
        if descriptor.name not in allowed:
            raise unsupported(f"{_OPTIONS_FIELD}.{prefix}{descriptor.name}")


def _windows(http2: Any) -> Http2Windows:
    """Http2ProtocolOptions windows (capped at 2^31-1, RFC 9113 6.9.1) and HPACK table size;
    unset fields keep Envoy's defaults."""
    default = ENVOY_DEFAULT_WINDOWS
    return Http2Windows(
        initial_stream_window_size=min(http2.initial_stream_window_size.value, 2**31 - 1)
        if http2.HasField("initial_stream_window_size")
        else default.initial_stream_window_size,
        initial_connection_window_size=min(http2.initial_connection_window_size.value,
                                           2**31 - 1)
        if http2.HasField("initial_connection_window_size")
        else default.initial_connection_window_size,
        hpack_table_size=http2.hpack_table_size.value if http2.HasField("hpack_table_size")
        else None)


def _translate_protocol(cluster: Any) -> UpstreamProtocol:
    options = getattr(cluster, "typed_extension_protocol_options", {}) or {}
    packed = options.get(PROTOCOL_OPTIONS)
    if packed is None:
        return UpstreamProtocol()
    message = hpo.HttpProtocolOptions()
    if not packed.Unpack(message):
        raise ConfigError("cannot unpack HttpProtocolOptions", field=_OPTIONS_FIELD)
    _refuse_unknown(message, {"explicit_http_config", "auto_config",
                              "common_http_protocol_options"}, "")
    idle = 3600.0
    if message.HasField("common_http_protocol_options"):
        common = message.common_http_protocol_options
        _refuse_unknown(common, _COMMON_FIELDS, "common_http_protocol_options.")
        if common.HasField("idle_timeout"):
            idle = common.idle_timeout.seconds + common.idle_timeout.nanos / 1e9
    kind = message.WhichOneof("upstream_protocol_options")
    if kind == "explicit_http_config":
        explicit = message.explicit_http_config
        prefix = "explicit_http_config."
        if explicit.WhichOneof("protocol_config") == "http2_protocol_options":
            http2 = explicit.http2_protocol_options
            _refuse_unknown(http2, _HTTP2_FIELDS, prefix + "http2_protocol_options.")
            streams = http2.max_concurrent_streams
            return UpstreamProtocol(True, False, streams.value if streams.value else None,
                                    idle or None, http2_windows=_windows(http2))
        http1 = explicit.http_protocol_options
        _refuse_unknown(http1, _HTTP1_FIELDS, prefix + "http_protocol_options.")
        return UpstreamProtocol(False, False, None, idle or None, http1.enable_trailers)
    if kind == "auto_config":
        auto = message.auto_config
        prefix = "auto_config."
        _refuse_unknown(auto, {"http_protocol_options", "http2_protocol_options"}, prefix)
        _refuse_unknown(auto.http_protocol_options, _HTTP1_FIELDS,
                        prefix + "http_protocol_options.")
        _refuse_unknown(auto.http2_protocol_options, _HTTP2_FIELDS,
                        prefix + "http2_protocol_options.")
        streams = auto.http2_protocol_options.max_concurrent_streams
        return UpstreamProtocol(False, True, streams.value if streams.value else None,
                                idle or None, auto.http_protocol_options.enable_trailers,
                                _windows(auto.http2_protocol_options))
    return UpstreamProtocol(idle_timeout=idle or None)


class PoolManager:
    """All pools of one worker. `runtime` is the cluster's proxy.upstream ClusterRuntime (or a
    fake with the same connection_opened/failed/closed methods)."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, int, str], Http1Pool | Http2Pool | AutoPool] = {}
        self._by_objects: dict[tuple[int, int], tuple[Any, Host,
                                                      Http1Pool | Http2Pool | AutoPool]] = {}

    def _find_or_make(self, runtime: Any, host: Host) -> Http1Pool | Http2Pool | AutoPool:
        """The pool by (cluster name, address, port, protocol kind), made when missing."""
        cluster = runtime.config
        protocol = upstream_protocol(cluster)
        tls = getattr(cluster, "upstream_tls", None)
        if tls is not None and tls.proxy_protocol_version is not None:
            # Envoy keys HTTP pools by the downstream addresses the PROXY header carries; our
            # pools do not yet, and sending pooled requests without the header would ignore
            # the cluster's transport socket. Fail the attempt visibly instead (503, UF).
            log.warning("cluster %r: upstream PROXY protocol is not implemented for HTTP "
                        "upstreams (tcp_proxy supports it)", cluster.name)
            raise ConnectFailedError("upstream PROXY protocol is not supported for HTTP "
                                     "upstreams")
        context: ssl.SSLContext | None = tls.ssl_context if tls is not None else None
        sni = tls.sni if tls is not None and tls.sni else None
        kind = "h2" if protocol.http2 else "auto" if protocol.auto and context else "h1"
        key = (cluster.name, host.address, host.port, kind)
        pool = self._pools.get(key)
        if pool is None or pool.closed:
            timeout = float(getattr(cluster, "connect_timeout", 5.0))
            # Cluster per_connection_buffer_limit_bytes bounds what one response may queue.
            limit = int(getattr(cluster, "per_connection_buffer_limit_bytes", 1024 * 1024))
            if kind == "auto":
                assert context is not None
                pool = AutoPool(runtime, host, connect_timeout=timeout, ssl_context=context,
                                server_hostname=sni,
                                max_concurrent_streams=protocol.max_concurrent_streams,
                                buffer_limit=limit, enable_trailers=protocol.http1_trailers,
                                windows=protocol.http2_windows,
                                idle_timeout=protocol.idle_timeout)
            elif kind == "h2":
                pool = Http2Pool(runtime, host, connect_timeout=timeout, ssl_context=context,
                                 server_hostname=sni,
                                 max_concurrent_streams=protocol.max_concurrent_streams,
                                 buffer_limit=limit, windows=protocol.http2_windows,
                                 idle_timeout=protocol.idle_timeout)
            else:
                pool = Http1Pool(runtime, host, connect_timeout=timeout, ssl_context=context,
                                 server_hostname=sni, buffer_limit=limit,
                                 enable_trailers=protocol.http1_trailers,
                                 idle_timeout=protocol.idle_timeout)
            self._pools[key] = pool
        return pool

    def try_new_stream(self, runtime: Any, host: Host) -> UpstreamStream | None:
        """A stream on a ready connection without waiting, or None (then await new_stream)."""
        return self.pool_for(runtime, host).try_new_stream()

    async def new_stream(self, runtime: Any, host: Host) -> UpstreamStream:
        return await self.pool_for(runtime, host).new_stream()

    def pool_for(self, runtime: Any, host: Host) -> Http1Pool | Http2Pool | AutoPool:
        """The pool, remembered per (cluster model, host) object pair: the lookup by protocol
        and key (_find_or_make) runs once per pair, not once per request."""
        config = runtime.config
        found = self._by_objects.get((id(config), id(host)))
        if found is not None and found[0] is config and found[1] is host \
                and not found[2].closed:
            return found[2]
        pool = self._find_or_make(runtime, host)
        if len(self._by_objects) > 4096:
            self._by_objects.clear()
        self._by_objects[(id(config), id(host))] = (config, host, pool)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._by_objects.clear()

    def __repr__(self) -> str:
        return f"PoolManager({len(self._pools)} pools)"
