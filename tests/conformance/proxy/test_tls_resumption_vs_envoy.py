"""Differential: upstream TLS session resumption (UpstreamTlsContext.max_session_keys),
Envoy 1.40 vs ours, through tcp_proxy to a TLS backend that records, per connection, whether
the session was resumed.

Measured on Envoy 1.40: by default (max_session_keys 1) the first connection makes a full
handshake and the next ones resume; with max_session_keys 0 none resumes. The same with a
TLS 1.2 backend, whether it resumes by session ticket (RFC 5077) or only by session ID
(RFC 5246 7.4.1.2, the server's session cache).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import (
    UPSTREAM_TLS,
    listener,
    read_line,
    server_ssl,
    static_cluster,
    tcp_proxy,
    tls_files,
)
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance


class _Handler(socketserver.BaseRequestHandler):
    server: _ResumptionServer

    def handle(self) -> None:
        try:
            sock = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with sock:
            self.server.resumed.append(sock.session_reused)
            with contextlib.suppress(OSError, ssl.SSLError):
                sock.sendall(b"hello\n")
                while data := sock.recv(4096):
                    sock.sendall(data)
                # close_notify sent: OpenSSL drops from its session cache a session whose
                # connection ends without one (ssl_clear_bad_session), which would stop
                # session-ID resumption whatever the client does.
                sock.unwrap()


class _ResumptionServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.resumed: list[bool] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


def _bootstrap(port: int, backend: int, **tls: Any) -> dict[str, Any]:
    socket_config = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "a.test", **tls}}
    return {"static_resources": {
        "listeners": [listener("l4", port, [{"filters": [tcp_proxy("backend")]}])],
        "clusters": [static_cluster("backend", [backend], transport_socket=socket_config)]}}


def _sessions(proxy_port: int, count: int) -> None:
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", proxy_port), timeout=5) as sock:
            assert read_line(sock) == "hello"
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"


def _backend_context(cert: Path, key: Path, backend: str) -> ssl.SSLContext:
    context = server_ssl(cert, key)
    if backend != "tls1.3":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if backend == "tls1.2-session-id":
        context.options |= ssl.OP_NO_TICKET
    return context


@pytest.mark.parametrize("backend", ["tls1.3", "tls1.2-ticket", "tls1.2-session-id"])
@pytest.mark.parametrize(("tls", "expected"), [
    ({}, [False, True, True]),
    ({"max_session_keys": 0}, [False, False, False]),
])
def test_upstream_sessions_resume_like_envoy(tmp_path: Path, tls: dict[str, Any],
                                             expected: list[bool], backend: str) -> None:
    cert, key = tls_files(tmp_path, ["a.test"])["a.test"]
    seen = {}
    for kind in ("envoy", "pointsman"):
        server = _ResumptionServer(_backend_context(cert, key, backend))
        try:
            port = free_port()
            bootstrap = _bootstrap(port, server.server_address[1], **tls)
            proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
            with proxy:
                proxy.wait_ready()
                _sessions(port, 3)
                proxy.wait_until(lambda s=server: len(s.resumed) == 3, 10, "3 sessions")
            seen[kind] = list(server.resumed)
        finally:
            server.shutdown()
            server.server_close()
    assert seen["envoy"] == expected
    assert seen["pointsman"] == seen["envoy"]
