"""The seed article's HAProxy configurations as mesh objects, run and checked on loopback.

    .venv/bin/python examples/mesh/seed_article/run.py [--sidecar pointsman|envoy]

Starts the backends at the article's addresses (mapped into 127.0.0.0/8), the control plane
serving this folder (`pointsman controlplane --mesh`), and the two Gateways' proxies (ours, or
real Envoy with --sidecar envoy); then sends the traffic the article describes and checks
each answer: HTTP redirected to HTTPS, TLS terminated with the Secret's certificate, path
routing to api and static, uri hashing, the default app pool with its sticky SRVID cookie,
WebSocket upgrades to ws, admin only from 127.10.1.0/24, active health checks gating new
servers, and PostgreSQL connections spread by least connections over TCP. Exits 1 if any
check fails. README.md maps the HAProxy lines to the objects.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from tests.support.mesh import MeshControlPlane, start_gateway  # noqa: E402
from tests.support.proxies import AdminProxy  # noqa: E402

FRONT = "127.10.10.100"
PG = ("127.10.10.200", 5432)
WWW = "www.solvethenetwork.com"
ADMIN = "admin.solvethenetwork.com"
POOLS = {
    "api": [("127.10.20.21", 8080), ("127.10.20.22", 8080), ("127.10.20.23", 8080)],
    "app": [("127.10.20.31", 8080), ("127.10.20.32", 8080), ("127.10.20.33", 8080)],
    "adm": [("127.10.20.41", 8443), ("127.10.20.42", 8443)],
    "ws": [("127.10.20.51", 9000), ("127.10.20.52", 9000)],
    "cdn": [("127.10.20.61", 8080), ("127.10.20.62", 8080)],
}
REPLICAS = [("127.10.30.11", 5432), ("127.10.30.12", 5432), ("127.10.30.13", 5432)]


# ---- backends ---------------------------------------------------------------------------------

def handler_for(name: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.headers.get("upgrade", "").lower() == "websocket":
                self.upgrade()
                return
            body = json.dumps({"backend": name, "path": self.path,
                               "host": self.headers.get("host")}).encode()
            self.send_response(200)
            self.send_header("x-backend", name)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def upgrade(self) -> None:
            # RFC 6455 section 4.2.2: 101, then the connection is the application's. Echo.
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nx-backend: " + name.encode() + b"\r\n\r\n")
            self.wfile.flush()
            while chunk := self.rfile.read1(65536):
                self.wfile.write(chunk)
                self.wfile.flush()
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class QuietServer(ThreadingHTTPServer):
    """Health checks connect and close (a TCP check) or reset: not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Replica(socketserver.ThreadingTCPServer):
    """A stand-in PostgreSQL replica: says its name, then echoes."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(inner) -> None:
                inner.request.sendall(name.encode() + b"\n")
                while data := inner.request.recv(4096):
                    inner.request.sendall(data)
        super().__init__(address, Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def backends() -> Iterator[None]:
    servers: list[socketserver.BaseServer] = []
    try:
        for pool, addresses in POOLS.items():
            for index, address in enumerate(addresses, 1):
                servers.append(QuietServer(address, handler_for(f"{pool}-0{index}")))
        servers += [Replica(address, f"pg-replica-0{index}")
                    for index, address in enumerate(REPLICAS, 1)]
        for server in servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


# ---- clients ----------------------------------------------------------------------------------

def tls_context() -> ssl.SSLContext:
    """Trusts the example's own self-signed certificate (tls-secret.yaml), hostname checked."""
    import yaml
    secret = yaml.safe_load((HERE / "tls-secret.yaml").read_text())
    context = ssl.create_default_context(cadata=secret["stringData"]["tls.crt"])
    return context


def get(path: str, *, host: str = WWW, source: str = "127.0.0.1", tls: bool = True,
        cookie: str | None = None) -> tuple[int, str, dict[str, str]]:
    """(status, backend name or '', response headers)."""
    port = 8443 if tls else 8080
    connection = http.client.HTTPConnection(FRONT, port, timeout=5, source_address=(source, 0))
    try:
        if tls:  # SNI and the certificate check use the site's name, as a browser's would
            sock = socket.create_connection((FRONT, port), timeout=5, source_address=(source, 0))
            connection.sock = tls_context().wrap_socket(sock, server_hostname=host)
        headers = {"host": host, **({"cookie": cookie} if cookie else {})}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        found = {key.lower(): value for key, value in response.getheaders()}
        return response.status, found.get("x-backend", ""), found
    finally:
        connection.close()


def websocket() -> tuple[str, bytes]:
    raw = socket.create_connection((FRONT, 8443), timeout=5)
    with tls_context().wrap_socket(raw, server_hostname=WWW) as sock:
        sock.sendall(f"GET /chat HTTP/1.1\r\nHost: {WWW}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed after {head!r}")
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            return lines[0], b""
        backend = next(value.strip() for key, _, value in
                       (line.partition(":") for line in lines[1:]) if key.lower() == "x-backend")
        sock.sendall(b"ping over the tunnel")
        echoed = rest
        while len(echoed) < len(b"ping over the tunnel"):
            echoed += sock.recv(4096)
        return backend, echoed


def pg_spread() -> list[str]:
    """Connections held open at once: least connections spreads them over the three.

    With equal weights Envoy's LEAST_REQUEST is "power of two choices": it samples two hosts
    at random (with replacement) and takes the less loaded, so a replica is only picked when
    it is sampled. Six connections missed one replica now and then, for Envoy as for us; with
    fifteen an idle replica is missed with probability (4/9)**14, about 1e-5.
    (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/load_balancing/load_balancers)
    """
    held, names = [], []
    try:
        for _ in range(15):
            sock = socket.create_connection(PG, timeout=5)
            held.append(sock)
            names.append(sock.makefile().readline().strip())
            time.sleep(0.05)  # each connection is counted before the next is placed
    finally:
        for sock in held:
            sock.close()
    return names


# ---- checks -----------------------------------------------------------------------------------

def observe() -> dict[str, Any]:
    seen: dict[str, Any] = {}
    status, _, headers = get("/anything?x=1", tls=False)
    seen["http redirects to https"] = (status, headers.get("location"))
    api = collections.Counter(get("/api/users")[1] for _ in range(12))
    seen["/api/ goes to api (least connections)"] = (
        set(api) <= {"api-01", "api-02", "api-03"} and len(api) >= 2)
    seen["/static/ /assets/ /media/ go to static"] = sorted(
        {get(path)[1][:3] for path in ("/static/a.css", "/assets/b.js", "/media/c.png")})
    seen["uri hashing keeps a path on one server"] = len(
        {get("/static/same.css")[1] for _ in range(6)}) == 1
    status, first, headers = get("/")
    cookie = headers.get("set-cookie", "")
    pinned = {get("/", cookie=cookie.split(";")[0])[1] for _ in range(6)}
    seen["default goes to app with a sticky SRVID session cookie"] = (
        status, first[:3], cookie.startswith("SRVID="), "max-age" not in cookie.lower(),
        pinned == {first})
    backend, echoed = websocket()
    seen["WebSocket upgrades go to ws"] = (backend[:2], echoed)
    seen["admin from outside the admin network"] = get("/", host=ADMIN)[0]
    status, backend, _ = get("/", host=ADMIN, source="127.10.1.7")
    seen["admin from 127.10.1.0/24"] = (status, backend[:3])
    seen["PostgreSQL by least connections"] = sorted(set(pg_spread()))
    return seen


EXPECTED: dict[str, Any] = {
    "http redirects to https": (301, f"https://{WWW}:8443/anything?x=1"),
    "/api/ goes to api (least connections)": True,
    "/static/ /assets/ /media/ go to static": ["cdn"],
    "uri hashing keeps a path on one server": True,
    "default goes to app with a sticky SRVID session cookie": (200, "app", True, True, True),
    "WebSocket upgrades go to ws": ("ws", b"ping over the tunnel"),
    "admin from outside the admin network": 403,
    "admin from 127.10.1.0/24": (200, "adm"),
    "PostgreSQL by least connections": ["pg-replica-01", "pg-replica-02", "pg-replica-03"],
}


def wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ssl.SSLError, http.client.HTTPException):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"not {what} after {timeout:.0f}s")


def _healthy(proxy: AdminProxy, addresses: list[tuple[str, int]]) -> bool:
    """Every address a healthy host of the proxy (its /clusters text, Envoy's format)."""
    _status, body = proxy.admin("/clusters")
    healthy = {line.split("::")[1] for line in body.splitlines()
               if line.endswith("::health_flags::healthy")}
    return all(f"{host}:{port}" in healthy for host, port in addresses)


def _connects(address: tuple[str, int]) -> bool:
    with socket.create_connection(address, timeout=2):
        return True


def run(sidecar: str) -> dict[str, Any]:
    with ExitStack() as stack:
        stack.enter_context(backends())
        control_plane = MeshControlPlane(HERE)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        proxies = [start_gateway(stack, sidecar, control_plane, name,
                                 namespace="solvethenetwork")
                   for name in ("https-front", "pg-frontend")]
        for proxy in proxies:
            proxy.wait_ready()
        # Health-checked pools start unhealthy until their first check passes.
        wait(lambda: get("/api/x")[0] == 200 and get("/")[0] == 200 and
             get("/static/x")[0] == 200, "serving the health-checked pools")
        wait(lambda: _connects(PG), "pg listening")
        # The replicas too start unhealthy until their first TCP check passes (at a loaded
        # moment one can lag the HTTP pools): least connections spreads over healthy ones.
        wait(lambda: _healthy(proxies[1], REPLICAS), "the PostgreSQL replicas healthy")
        return observe()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sidecar", choices=("pointsman", "envoy"), default="pointsman",
                        help="which proxy runs the Gateways")
    args = parser.parse_args(argv)
    seen = run(args.sidecar)
    failed = 0
    for check, expected in EXPECTED.items():
        ok = seen.get(check) == expected
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {check}" +
              ("" if ok else f": saw {seen.get(check)!r}, expected {expected!r}"))
    print(f"{len(EXPECTED) - failed}/{len(EXPECTED)} checks passed with {args.sidecar}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
