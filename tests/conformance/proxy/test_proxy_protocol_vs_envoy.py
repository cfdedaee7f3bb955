"""PROXY protocol both ways, same bootstrap to Envoy and to `pointsman proxy`: the listener
filter reads the client's v1 header, tcp_proxy's cluster writes a v2 header upstream, and the
backend sees the original client address."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.integration.proxy.helpers import (
    PROXY_PROTOCOL,
    ProxyProtocolServer,
    listener,
    read_line,
    static_cluster,
    tcp_proxy,
)
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

UPSTREAM_PP = ("type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3."
               "ProxyProtocolUpstreamTransport")
RAW_BUFFER = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"


def bootstrap(port: int, backend_port: int) -> dict[str, Any]:
    upstream_pp = {"name": "envoy.transport_sockets.upstream_proxy_protocol", "typed_config": {
        "@type": UPSTREAM_PP, "config": {"version": "V2"},
        "transport_socket": {"name": "envoy.transport_sockets.raw_buffer",
                             "typed_config": {"@type": RAW_BUFFER}}}}
    return {"static_resources": {
        "listeners": [listener("pp", port, [{"filters": [tcp_proxy("backend")]}],
                               listener_filters=[{
                                   "name": "envoy.filters.listener.proxy_protocol",
                                   "typed_config": {"@type": PROXY_PROTOCOL}}])],
        "clusters": [static_cluster("backend", [backend_port], transport_socket=upstream_pp)],
    }}


def test_client_address_reaches_the_backend_like_envoy() -> None:
    backend = ProxyProtocolServer()
    seen = {}
    try:
        for kind in ("envoy", "pointsman"):
            port = free_port()
            config = bootstrap(port, backend.port)
            proxy = Envoy(config) if kind == "envoy" else Pointsman(config)
            with proxy:
                proxy.wait_ready()
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 4321 80\r\nhello")
                    seen[kind] = read_line(sock)
                # Without a header the connection is refused (closed) by both.
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
                    seen[kind + " no header"] = read_line(sock) or "closed"
    finally:
        backend.stop()
    assert seen["pointsman"] == seen["envoy"] == "v2 192.0.2.7:4321"
    assert seen["pointsman no header"] == seen["envoy no header"] == "closed"
