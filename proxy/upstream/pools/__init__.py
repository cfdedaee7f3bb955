"""Upstream HTTP connection pools, one per (cluster, host, protocol), owned by a PoolManager.

The protocol comes from the cluster's `typed_extension_protocol_options`
`envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, translated with the cluster into
`UpstreamProtocol` (proxy.model.protocol_options): explicit HTTP/1.1, HTTP/2 or HTTP/3
(QUIC, proxy.upstream.pools.http3); for
`auto_config`, what TLS ALPN negotiates (proxy.upstream.pools.auto; HTTP/1.1 without TLS);
HTTP/1.1 when absent, as in Envoy.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from proxy.model.protocol_options import UpstreamProtocol
from proxy.upstream.host import Host
from proxy.upstream.pools.auto import AutoPool
from proxy.upstream.pools.base import (
    ConnectFailedError,
    PoolOverflowError,
    UpstreamStream,
)
from proxy.upstream.pools.http1 import Http1Pool
from proxy.upstream.pools.http2 import Http2Pool
from proxy.upstream.pools.http3 import Http3Pool

log = logging.getLogger(__name__)

__all__ = ["ConnectFailedError", "PoolManager", "PoolOverflowError", "UpstreamProtocol",
           "UpstreamStream", "upstream_protocol"]


def upstream_protocol(cluster: Any) -> UpstreamProtocol:
    """The HTTP protocol settings of a `proxy.model.cluster.Cluster`, translated with it
    (proxy.model.protocol_options); the default (HTTP/1.1) for a model without them."""
    options = getattr(cluster, "protocol_options", None)
    return options.http if options is not None else _DEFAULT


_DEFAULT = UpstreamProtocol()
AnyPool = Http1Pool | Http2Pool | Http3Pool | AutoPool


class PoolManager:
    """All pools of one worker. `runtime` is the cluster's proxy.upstream ClusterRuntime (or a
    fake with the same connection_opened/failed/closed methods)."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, int, str, str], AnyPool] = {}
        self._by_objects: dict[tuple[int, int], tuple[Any, Host, Any,
                                                      AnyPool]] = {}

    def _find_or_make(self, runtime: Any, host: Host) -> AnyPool:
        """The pool by (cluster name, address, port, protocol kind, transport socket match),
        made when missing. Envoy keys pools by host and transport socket factory: a
        connection made with one socket (mTLS) is never shared with a host resolved to
        another (plaintext) (cluster.proto transport_socket_matches)."""
        cluster = runtime.config
        protocol = upstream_protocol(cluster)
        socket = cluster.socket_for(host.socket_metadata, host.locality_socket_metadata)
        tls = socket.transport
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
        kind = "h3" if protocol.http3 else "h2" if protocol.http2 \
            else "auto" if protocol.auto and context else "h1"
        key = (cluster.name, host.address, host.port, kind, socket.name)
        pool = self._pools.get(key)
        if pool is None or pool.closed:
            timeout = float(getattr(cluster, "connect_timeout", 5.0))
            # Cluster per_connection_buffer_limit_bytes bounds what one response may queue.
            limit = int(getattr(cluster, "per_connection_buffer_limit_bytes", 1024 * 1024))
            if kind == "h3":
                pool = Http3Pool(runtime, host, connect_timeout=timeout, tls=tls,
                                 buffer_limit=limit, idle_timeout=protocol.idle_timeout)
            elif kind == "auto":
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

    def pool_for(self, runtime: Any, host: Host) -> AnyPool:
        """The pool, remembered per (cluster model, host) object pair: the lookup by protocol
        and key (_find_or_make) runs once per pair, not once per request (again when an EDS
        update changed the host's transport socket metadata)."""
        config = runtime.config
        found = self._by_objects.get((id(config), id(host)))
        if found is not None and found[0] is config and found[1] is host \
                and _same_socket_metadata(found[2], host) and not found[3].closed:
            return found[3]
        pool = self._find_or_make(runtime, host)
        if len(self._by_objects) > 4096:
            self._by_objects.clear()
        metadata = (host.socket_metadata, host.locality_socket_metadata)
        self._by_objects[(id(config), id(host))] = (config, host, metadata, pool)
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        self._by_objects.clear()

    def __repr__(self) -> str:
        return f"PoolManager({len(self._pools)} pools)"


def _same_socket_metadata(remembered: tuple[Any, Any], host: Host) -> bool:
    """Whether the host's transport socket metadata is still the one its pool was chosen
    with (an update replaces the metadata tuples rather than mutating them)."""
    return remembered[0] is host.socket_metadata \
        and remembered[1] is host.locality_socket_metadata
