"""Shared by the proxy integration and conformance tests: tagged backends and bootstraps.
`Pointsman` (the sidecar as a test process) lives in tests.support.pointsman; it is
re-exported here for the tests that import it from this module."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from pathlib import Path
from typing import Any

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = ("type.googleapis.com/"
                 "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")
PROXY_PROTOCOL = ("type.googleapis.com/"
                  "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol")
DOWNSTREAM_TLS = ("type.googleapis.com/"
                  "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext")
UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


class _Handler(socketserver.BaseRequestHandler):
    server: TaggedServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        if self.server.ssl_context is not None:
            try:
                sock = self.server.ssl_context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.server.connections.append(self.client_address)
        try:
            server_name = getattr(sock, "sni", "")
            sock.sendall(f"{self.server.name} {server_name}\n".encode())
            while data := sock.recv(65536):
                sock.sendall(data)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            if sock is not self.request:
                sock.close()


class TaggedServer(socketserver.ThreadingTCPServer):
    """Says `NAME SNI\\n` on each connection, then echoes until EOF (half-close aware)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.name = name
        self.ssl_context = ssl_context
        self.connections: list[Any] = []
        if ssl_context is not None:
            ssl_context.sni_callback = _remember_sni
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def _remember_sni(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None,
                  _context: ssl.SSLContext) -> None:
    sock.sni = name or ""  # type: ignore[union-attr]


def read_line(sock: socket.socket) -> str:
    """One line; '' if the peer closed or reset first."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = sock.recv(1)
        except ConnectionResetError:
            return ""
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


def endpoint(port: int) -> dict[str, Any]:
    return {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}}}}


def static_cluster(name: str, ports: list[int], **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name,
                            "endpoints": [{"lb_endpoints": [endpoint(p) for p in ports]}]},
        **extra,
    }


def tcp_proxy(cluster: str | None = None, weighted: list[tuple[str, int]] | None = None,
              **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"@type": TCP_PROXY, "stat_prefix": "tcp", **extra}
    if weighted:
        config["weighted_clusters"] = {"clusters": [{"name": n, "weight": w}
                                                    for n, w in weighted]}
    else:
        config["cluster"] = cluster
    return {"name": "envoy.filters.network.tcp_proxy", "typed_config": config}


def listener(name: str, port: int, chains: list[dict[str, Any]], **extra: Any
             ) -> dict[str, Any]:
    return {"name": name,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": chains, **extra}


def tls_files(directory: Path, names: list[str]) -> dict[str, tuple[Path, Path]]:
    """A CA and one leaf certificate per name (cryptography-free: openssl CLI)."""
    import subprocess

    ca_key, ca_cert = directory / "ca.key", directory / "ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=pointsman-test-ca", "-keyout", ca_key, "-out", ca_cert],
                   check=True, capture_output=True)
    result = {"ca": (ca_cert, ca_key)}
    for name in names:
        key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", \
            directory / f"{name}.pem"
        ext = directory / f"{name}.ext"
        ext.write_text(f"subjectAltName=DNS:{name}\n")
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj",
                        f"/CN={name}", "-keyout", key, "-out", csr],
                       check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
                        "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
                       check=True, capture_output=True)
        result[name] = (cert, key)
    return result


def server_ssl(cert: Path, key: Path, alpn: list[str] | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class _ProxyProtocolHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        from proxy.listeners import proxy_protocol

        sock: socket.socket = self.request
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
            verdict = proxy_protocol.parse(data)
            if not isinstance(verdict, proxy_protocol.NeedMore):
                break
        if isinstance(verdict, proxy_protocol.ProxyHeader) and verdict.source:
            line = f"v{verdict.version} {verdict.source[0]}:{verdict.source[1]}\n"
        else:
            line = f"none {verdict!r}\n"
        sock.sendall(line.encode())


class ProxyProtocolServer(TaggedServer):
    """Reads a PROXY header and answers `vN SOURCE_IP:PORT` (or `none ...`)."""

    def __init__(self) -> None:
        socketserver.ThreadingTCPServer.__init__(self, ("127.0.0.1", 0), _ProxyProtocolHandler)
        self.name = "pp"
        self.ssl_context = None
        self.connections = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
