"""HTTP/3 in tests: a QUIC listener's bootstrap and aioquic's own HTTP/3 client.

`quic_bootstrap` is `http_bootstrap` with the listener on UDP: `udp_listener_config.quic_options`,
the `envoy.transport_sockets.quic` transport socket around a DownstreamTlsContext, and the HCM
with `codec_type: HTTP3` (Envoy's configs/envoyproxy_io_proxy_http3_downstream.yaml shape), so
Envoy and Pointsman run the same file. `H3Client` is one QUIC connection (aioquic's asyncio
client) on which `request()` runs concurrent HTTP/3 exchanges.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamReset

from tests.support.bootstraps import http_bootstrap, static_cluster

QUIC_TRANSPORT = ("type.googleapis.com/"
                  "envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport")


def quic_bootstrap(port: int, routes: list[dict[str, Any]], clusters: list[dict[str, Any]],
                   cert: Path, key: Path, *, quic_options: dict[str, Any] | None = None,
                   stat_prefix: str = "ingress", **hcm: Any) -> dict[str, Any]:
    bootstrap = http_bootstrap(port, routes, clusters, stat_prefix=stat_prefix,
                               codec_type="HTTP3", **hcm)
    listener = bootstrap["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["protocol"] = "UDP"
    listener["udp_listener_config"] = {"quic_options": quic_options or {}}
    listener["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.quic", "typed_config": {
            "@type": QUIC_TRANSPORT, "downstream_tls_context": {"common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                      "private_key": {"filename": str(key)}}]}}}}
    return bootstrap


@dataclass
class H3Response:
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] = field(default_factory=list)
    reset: int | None = None  # the RESET_STREAM error code, when the stream was reset

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)


class _Protocol(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.pending: dict[int, tuple[H3Response, asyncio.Future[H3Response]]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset) and event.stream_id in self.pending:
            response, done = self.pending.pop(event.stream_id)
            response.reset = event.error_code
            if not done.done():
                done.set_result(response)
        for h3_event in self.h3.handle_event(event):
            self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        if not isinstance(event, HeadersReceived | DataReceived):
            return
        entry = self.pending.get(event.stream_id)
        if entry is None:
            return
        response, done = entry
        if isinstance(event, HeadersReceived):
            headers = [(n.decode(), v.decode()) for n, v in event.headers]
            if response.status:
                response.trailers = headers
            else:
                response.status = int(dict(headers)[":status"])
                response.headers = [(n, v) for n, v in headers if not n.startswith(":")]
        else:
            response.body += event.data
        if event.stream_ended:
            self.pending.pop(event.stream_id, None)
            if not done.done():
                done.set_result(response)


class H3Client:
    """One HTTP/3 connection; `request()` may be called concurrently."""

    def __init__(self, protocol: _Protocol, authority: str) -> None:
        self.protocol = protocol
        self.authority = authority

    async def request(self, method: str, path: str, *, body: bytes = b"",
                      headers: list[tuple[str, str]] | None = None,
                      trailers: list[tuple[str, str]] | None = None) -> H3Response:
        protocol = self.protocol
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        done: asyncio.Future[H3Response] = asyncio.get_running_loop().create_future()
        protocol.pending[stream_id] = (H3Response(), done)
        block = [(b":method", method.encode()), (b":scheme", b"https"),
                 (b":authority", self.authority.encode()), (b":path", path.encode()),
                 *((n.encode(), v.encode()) for n, v in headers or [])]
        protocol.h3.send_headers(stream_id, block, end_stream=not body and not trailers)
        if body:
            protocol.h3.send_data(stream_id, body, end_stream=not trailers)
        if trailers:
            protocol.h3.send_headers(stream_id, [(n.encode(), v.encode()) for n, v in trailers],
                                     end_stream=True)
        protocol.transmit()
        async with asyncio.timeout(20):
            return await done


    async def reset_after(self, path: str, seconds: float, *,
                          headers: list[tuple[str, str]] | None = None) -> None:
        """GET `path` (its request left open), then after `seconds` abandon it: RESET_STREAM
        and STOP_SENDING H3_REQUEST_CANCELLED (RFC 9114 4.1.1)."""
        protocol = self.protocol
        quic = protocol._quic
        stream_id = quic.get_next_available_stream_id()
        block = [(b":method", b"GET"), (b":scheme", b"https"),
                 (b":authority", self.authority.encode()), (b":path", path.encode()),
                 *((n.encode(), v.encode()) for n, v in headers or [])]
        protocol.h3.send_headers(stream_id, block, end_stream=False)
        protocol.transmit()
        await asyncio.sleep(seconds)
        quic.reset_stream(stream_id, 0x10C)
        quic.stop_stream(stream_id, 0x10C)
        protocol.transmit()


@contextlib.asynccontextmanager
async def h3_client(port: int, *, host: str = "127.0.0.1",
                    authority: str = "example.com",
                    max_stream_data: int | None = None) -> AsyncIterator[H3Client]:
    configuration = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                                      verify_mode=ssl.CERT_NONE, server_name="localhost")
    if max_stream_data is not None:
        configuration.max_stream_data = max_stream_data
    async with connect(host, port, configuration=configuration,
                       create_protocol=_Protocol, wait_connected=True) as protocol:
        yield H3Client(protocol, authority)  # type: ignore[arg-type]


H3_UPSTREAM_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http3_protocol_options": {}}}}
QUIC_UPSTREAM = ("type.googleapis.com/"
                 "envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport")


def h3_cluster(name: str, port: int, trusted_ca: Path | None = None, *,
               sni: str = "localhost", **extra: Any) -> dict[str, Any]:
    """A STATIC cluster speaking HTTP/3 to 127.0.0.1:`port`, Envoy's upstream HTTP/3 shape
    (configs/google_com_http3_upstream_proxy.yaml): explicit http3_protocol_options and the
    QUIC transport socket wrapping an UpstreamTlsContext (SNI, and trusted_ca when given)."""
    context: dict[str, Any] = {"sni": sni}
    if trusted_ca is not None:
        context["common_tls_context"] = {"validation_context": {
            "trusted_ca": {"filename": str(trusted_ca)}}}
    return static_cluster(name, [port], typed_extension_protocol_options=H3_UPSTREAM_OPTIONS,
                          transport_socket={"name": "envoy.transport_sockets.quic",
                                            "typed_config": {"@type": QUIC_UPSTREAM,
                                                             "upstream_tls_context": context}},
                          **extra)
