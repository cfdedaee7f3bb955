"""`auto_config`: the upstream protocol is what TLS ALPN negotiates (Envoy
HttpProtocolOptions.AutoHttpConfig), HTTP/1.1 when the handshake picks nothing or http/1.1.

The first request to a host opens one TLS connection to learn the negotiated protocol, then
every request goes through the matching pool (the answer is kept for the pool's lifetime).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from proxy.model.protocol_options import ENVOY_DEFAULT_WINDOWS, Http2Windows
from proxy.upstream.host import Host
from proxy.upstream.pools.base import UpstreamStream
from proxy.upstream.pools.connection import open_connection
from proxy.upstream.pools.http1 import Http1Pool
from proxy.upstream.pools.http2 import Http2Pool


class AutoPool:
    def __init__(self, runtime: Any, host: Host, *, connect_timeout: float,
                 ssl_context: ssl.SSLContext, server_hostname: str | None,
                 max_concurrent_streams: int | None, buffer_limit: int,
                 enable_trailers: bool = False,
                 windows: Http2Windows = ENVOY_DEFAULT_WINDOWS,
                 idle_timeout: float | None = 3600.0) -> None:
        self.host = host
        self.connect_timeout = connect_timeout
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.http1 = Http1Pool(runtime, host, connect_timeout=connect_timeout,
                               ssl_context=ssl_context, server_hostname=server_hostname,
                               buffer_limit=buffer_limit, enable_trailers=enable_trailers,
                               idle_timeout=idle_timeout)
        self.http2 = Http2Pool(runtime, host, connect_timeout=connect_timeout,
                               ssl_context=ssl_context, server_hostname=server_hostname,
                               max_concurrent_streams=max_concurrent_streams,
                               buffer_limit=buffer_limit, windows=windows,
                               idle_timeout=idle_timeout)
        self.chosen: Http1Pool | Http2Pool | None = None
        self._probing: asyncio.Future[Http1Pool | Http2Pool] | None = None
        self.closed = False

    def try_new_stream(self) -> UpstreamStream | None:
        """A stream without waiting once the protocol is known and a slot is ready."""
        return self.chosen.try_new_stream() if self.chosen is not None else None

    async def new_stream(self) -> UpstreamStream:
        if self.chosen is None:
            if self._probing is None:
                self._probing = asyncio.ensure_future(self._probe())
            try:
                self.chosen = await asyncio.shield(self._probing)
            except BaseException:
                self._probing = None  # a failed probe is retried by the next request
                raise
        return await self.chosen.new_stream()

    async def _probe(self) -> Http1Pool | Http2Pool:
        transport, _ = await open_connection(
            asyncio.Protocol, self.host.address, self.host.port,
            connect_timeout=self.connect_timeout, ssl_context=self.ssl_context,
            server_hostname=self.server_hostname)
        try:
            ssl_object = transport.get_extra_info("ssl_object")
            negotiated = ssl_object.selected_alpn_protocol() if ssl_object else None
        finally:
            transport.abort()  # nothing in flight; no TLS close_notify round trip to wait for
        return self.http2 if negotiated == "h2" else self.http1

    def close(self) -> None:
        self.closed = True
        self.http1.close()
        self.http2.close()

    def __repr__(self) -> str:
        return f"AutoPool({self.host.address}:{self.host.port} chosen={self.chosen!r})"
