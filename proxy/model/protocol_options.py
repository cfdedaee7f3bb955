"""A cluster's upstream protocol options -> typed settings, translated once at config time.

`typed_extension_protocol_options` maps extension names to their options. Envoy resolves each
key by name (a network filter, an HTTP filter or a protocol options factory) and refuses a
cluster with an unknown one: "Didn't find a registered network or http filter or protocol
options implementation for name: 'KEY'" (upstream_impl.cc, createProtocolOptionsConfig). We
know two keys and refuse any other by name, so that a misspelled key is an error, not an
HTTP/2 cluster silently spoken to in HTTP/1.1:

- `envoy.extensions.upstreams.http.v3.HttpProtocolOptions` (the HTTP pools): explicit HTTP/1.1,
  HTTP/2 or HTTP/3 (empty http3_protocol_options; the cluster's transport socket must then be
  `envoy.transport_sockets.quic`, checked in proxy.model.cluster), or `auto_config` (ALPN),
  with the fields in `_HTTP1_FIELDS` / `_HTTP2_FIELDS` / `_COMMON_FIELDS`; anything else set
  is refused naming its field;
- `envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions`: `idle_timeout` closes an upstream TCP
  connection that no downstream connection uses. tcp_proxy opens one upstream connection per
  downstream connection and closes it with it (no preconnect, a pending connect is abandoned
  with its downstream), so there is never such a connection to time out; the field is
  accepted with that meaning (checked against Envoy: tests/conformance/proxy/
  test_tcp_protocol_options_vs_envoy.py).

Without HttpProtocolOptions, the deprecated Cluster fields `http2_protocol_options`,
`http_protocol_options` and `common_http_protocol_options` say the same, as in Envoy
(createOptions: the typed options win when both are given; HTTP/1.1 and HTTP/2 options
together need a protocol_selection we do not support).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.extensions.upstreams.tcp.v3 import tcp_protocol_options_pb2 as tpo

from protos.errors import ConfigError, unsupported
from protos.registry import type_name
from proxy.model.fields import reject_unsupported, seconds

log = logging.getLogger(__name__)

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
TCP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"
_KNOWN = {HTTP_PROTOCOL_OPTIONS: hpo.HttpProtocolOptions,
          TCP_PROTOCOL_OPTIONS: tpo.TcpProtocolOptions}

# What we honour inside HttpProtocolOptions; anything else set is refused by name.
_COMMON_FIELDS = {"idle_timeout"}
_HTTP1_FIELDS = {"enable_trailers"}
_HTTP2_FIELDS = {"max_concurrent_streams", "initial_stream_window_size",
                 "initial_connection_window_size", "hpack_table_size"}
_DEPRECATED = ("http_protocol_options", "http2_protocol_options", "common_http_protocol_options")


@dataclass(frozen=True)
class Http2Windows:
    """The cluster's http2_protocol_options for our side of its connections: the windows and
    HPACK table we advertise. Defaults are Envoy's (Http2ProtocolOptions: 16 MiB per stream,
    24 MiB per connection; the RFC 7541 table of 4096 bytes, not advertised). A stream window
    is also how much one upstream stream may have in flight towards us unread."""

    initial_stream_window_size: int = 16 * 1024 * 1024
    initial_connection_window_size: int = 24 * 1024 * 1024
    hpack_table_size: int | None = None


ENVOY_DEFAULT_WINDOWS = Http2Windows()


@dataclass(frozen=True)
class UpstreamProtocol:
    """What the HTTP pools need: HTTP/1.1 unless `http2` or `auto` (ALPN with TLS)."""

    http2: bool = False
    auto: bool = False
    max_concurrent_streams: int | None = None  # our own cap on top of the peer's SETTINGS
    idle_timeout: float | None = 3600.0  # Envoy common_http_protocol_options.idle_timeout: 1h
    http1_trailers: bool = False  # http_protocol_options.enable_trailers (HTTP/1.1 upstreams)
    http2_windows: Http2Windows = ENVOY_DEFAULT_WINDOWS  # http2_protocol_options windows, HPACK
    http3: bool = False  # explicit_http_config.http3_protocol_options (QUIC transport socket)


@dataclass(frozen=True)
class ProtocolOptions:
    http: UpstreamProtocol = field(default_factory=UpstreamProtocol)
    # TcpProtocolOptions.idle_timeout (Envoy default 10 min, 0 = off): see the module docstring.
    tcp_idle_timeout: float | None = 600.0


def translate_protocol_options(message: cluster_pb2.Cluster) -> ProtocolOptions:
    """The cluster's protocol options; ConfigError naming the key or field."""
    options = message.typed_extension_protocol_options
    for key in options:
        if key not in _KNOWN:
            raise ConfigError(
                f"unknown protocol options {key!r} (Envoy: no registered network or http filter "
                f"or protocol options implementation for that name; Pointsman knows "
                f"{HTTP_PROTOCOL_OPTIONS} and {TCP_PROTOCOL_OPTIONS})",
                field=f"typed_extension_protocol_options[{key}]")
    http = _http(message)
    tcp = _unpack(options, TCP_PROTOCOL_OPTIONS)
    tcp_idle = 600.0
    if tcp is not None:
        reject_unsupported(tcp, {"idle_timeout"},
                           prefix=f"typed_extension_protocol_options[{TCP_PROTOCOL_OPTIONS}].")
        if tcp.HasField("idle_timeout"):
            tcp_idle = seconds(tcp.idle_timeout)
    return ProtocolOptions(http=http, tcp_idle_timeout=tcp_idle or None)


def _unpack(options: Any, key: str) -> Any:
    if key not in options:
        return None
    packed = options[key]
    expected = _KNOWN[key]
    if type_name(packed.type_url) != expected.DESCRIPTOR.full_name:
        raise ConfigError(f"expected a {expected.DESCRIPTOR.full_name}, got "
                          f"{type_name(packed.type_url)!r}",
                          field=f"typed_extension_protocol_options[{key}]")
    message = expected()
    packed.Unpack(message)
    return message


def _http(message: cluster_pb2.Cluster) -> UpstreamProtocol:
    typed = _unpack(message.typed_extension_protocol_options, HTTP_PROTOCOL_OPTIONS)
    deprecated = [name for name in _DEPRECATED if message.HasField(name)]
    if typed is not None:
        for name in deprecated:
            log.warning("cluster %r: %s has no effect beside typed_extension_protocol_options "
                        "%s (as in Envoy)", message.name, name, HTTP_PROTOCOL_OPTIONS)
        return _translate_http(typed, f"typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS}].")
    if not deprecated:
        return UpstreamProtocol()
    return _translate_http(_from_deprecated(message), "")


def _from_deprecated(message: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    """Envoy's createOptions for a cluster without HttpProtocolOptions."""
    if message.HasField("http_protocol_options") and message.HasField("http2_protocol_options"):
        # Envoy: "Both HTTP1 and HTTP2 options may only be configured with non-default
        # 'protocol_selection' values" (and we support only the default).
        raise ConfigError("http_protocol_options and http2_protocol_options together need a "
                          "protocol_selection, which Pointsman does not support",
                          field="http2_protocol_options")
    options = hpo.HttpProtocolOptions()
    if message.HasField("common_http_protocol_options"):
        options.common_http_protocol_options.CopyFrom(message.common_http_protocol_options)
    explicit = options.explicit_http_config
    if message.HasField("http2_protocol_options"):
        explicit.http2_protocol_options.CopyFrom(message.http2_protocol_options)
    else:
        explicit.http_protocol_options.CopyFrom(message.http_protocol_options)
    return options


def _translate_http(message: hpo.HttpProtocolOptions, prefix: str) -> UpstreamProtocol:
    """HttpProtocolOptions -> UpstreamProtocol; `prefix` is where the fields sit (the typed
    options, or the Cluster itself for the deprecated fields)."""
    deprecated = not prefix
    reject_unsupported(message, {"explicit_http_config", "auto_config",
                                 "common_http_protocol_options"}, prefix=prefix)
    idle = 3600.0
    if message.HasField("common_http_protocol_options"):
        common = message.common_http_protocol_options
        reject_unsupported(common, _COMMON_FIELDS, prefix=f"{prefix}common_http_protocol_options.")
        if common.HasField("idle_timeout"):
            idle = seconds(common.idle_timeout)
    kind = message.WhichOneof("upstream_protocol_options")
    if kind == "explicit_http_config":
        explicit = message.explicit_http_config
        where = prefix if deprecated else f"{prefix}explicit_http_config."
        if explicit.WhichOneof("protocol_config") == "http3_protocol_options":
            # Upstream HTTP/3 (proxy.upstream.pools.http3): the stream limit is the one the
            # server advertises (RFC 9000 4.6); no option of ours changes it yet.
            reject_unsupported(explicit.http3_protocol_options, set(),
                               prefix=f"{where}http3_protocol_options.")
            return UpstreamProtocol(idle_timeout=idle or None, http3=True)
        if explicit.WhichOneof("protocol_config") == "http2_protocol_options":
            http2 = explicit.http2_protocol_options
            reject_unsupported(http2, _HTTP2_FIELDS, prefix=f"{where}http2_protocol_options.")
            streams = http2.max_concurrent_streams.value or None
            return UpstreamProtocol(True, False, streams, idle or None,
                                    http2_windows=_windows(http2))
        http1 = explicit.http_protocol_options
        reject_unsupported(http1, _HTTP1_FIELDS, prefix=f"{where}http_protocol_options.")
        return UpstreamProtocol(False, False, None, idle or None, http1.enable_trailers)
    if kind == "auto_config":
        auto = message.auto_config
        where = f"{prefix}auto_config."
        reject_unsupported(auto, {"http_protocol_options", "http2_protocol_options"},
                           prefix=where)
        reject_unsupported(auto.http_protocol_options, _HTTP1_FIELDS,
                           prefix=f"{where}http_protocol_options.")
        reject_unsupported(auto.http2_protocol_options, _HTTP2_FIELDS,
                           prefix=f"{where}http2_protocol_options.")
        streams = auto.http2_protocol_options.max_concurrent_streams.value or None
        return UpstreamProtocol(False, True, streams, idle or None,
                                auto.http_protocol_options.enable_trailers,
                                _windows(auto.http2_protocol_options))
    if kind is not None:
        raise unsupported(f"{prefix}{kind}")
    return UpstreamProtocol(idle_timeout=idle or None)


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
