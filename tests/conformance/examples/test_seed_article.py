"""The seed article's HAProxy "https_front" L7 routing, run for real with Envoy and Pointsman.

`examples/seed_article/edge-l7.yaml` maps every ACL of the article's HAProxy config to Envoy v3
(see the table in that file). Its addresses live in 127.0.0.0/8, so the twelve backends and the
frontend bind loopback aliases with the article's last octets. Each proxy in turn gets the very
same bootstrap; the test sends the same requests and expects the same backend pools to answer:
path routing, the admin host with its source-address rule, the sticky SRVID cookie, WebSocket
upgrades, and TLS to the admin backends.
"""

from __future__ import annotations

import collections
import http.client
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.mesh.seed_article.run import handler_for
from tests.integration.proxy.helpers import tls_files
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.processes import REPO, ManagedProcess

pytestmark = pytest.mark.conformance

BOOTSTRAP = REPO / "examples" / "seed_article" / "edge-l7.yaml"
FRONTEND = ("127.10.10.100", 8080)
ADMIN_HOST = "admin.solvethenetwork.com"
POOLS = {
    "api": [("127.10.20.21", 8080), ("127.10.20.22", 8080), ("127.10.20.23", 8080)],
    "app": [("127.10.20.31", 8080), ("127.10.20.32", 8080), ("127.10.20.33", 8080)],
    "adm": [("127.10.20.41", 8443), ("127.10.20.42", 8443)],
    "ws": [("127.10.20.51", 9000), ("127.10.20.52", 9000)],
    "cdn": [("127.10.20.61", 8080), ("127.10.20.62", 8080)],
}


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    certs = tls_files(tmp_path_factory.mktemp("certs"), ["adm"])
    admin_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    admin_tls.load_cert_chain(*certs["adm"])
    servers: list[ThreadingHTTPServer] = []
    try:
        for pool, addresses in POOLS.items():
            for index, address in enumerate(addresses, 1):
                server = ThreadingHTTPServer(address, handler_for(f"{pool}-0{index}"))
                server.daemon_threads = True
                if pool == "adm":
                    server.socket = admin_tls.wrap_socket(server.socket, server_side=True)
                threading.Thread(target=server.serve_forever, daemon=True).start()
                servers.append(server)
        yield
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def bootstrap() -> dict[str, Any]:
    return dict(yaml.safe_load(BOOTSTRAP.read_text()))


def get(path: str, *, host: str = "www.solvethenetwork.com", source: str = "127.0.0.1",
        cookie: str | None = None) -> tuple[int, str, str | None]:
    """(status, backend name from x-backend or '', set-cookie)."""
    connection = http.client.HTTPConnection(*FRONTEND, timeout=5, source_address=(source, 0))
    try:
        headers = {"host": host, **({"cookie": cookie} if cookie else {})}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("x-backend") or "", response.getheader(
            "set-cookie")
    finally:
        connection.close()


def websocket_backend() -> tuple[str, bytes]:
    with socket.create_connection(FRONTEND, timeout=5) as sock:
        sock.sendall(b"GET /chat HTTP/1.1\r\nHost: www.solvethenetwork.com\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed after {head!r}"
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), lines
        backend = next(v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
                       if k.lower() == "x-backend")
        sock.sendall(b"ping over the tunnel")
        echoed = rest
        while len(echoed) < len(b"ping over the tunnel"):
            echoed += sock.recv(4096)
        return backend, echoed


def wait_all_pools_healthy(proxy: ManagedProcess) -> None:
    # Active HTTP health checks gate api/app hosts; wait until both pools answer.
    def answering() -> bool:
        return get("/api/x")[0] == 200 and get("/")[0] == 200
    proxy.wait_until(answering, timeout=30, what="routing to health-checked pools")


def observe(proxy: ManagedProcess) -> dict[str, Any]:
    wait_all_pools_healthy(proxy)
    seen: dict[str, Any] = {}
    api = collections.Counter(get("/api/users")[1] for _ in range(6))
    seen["api"] = sorted(api.items())
    seen["static"] = sorted({get(p)[1][:3] for p in ("/static/a.css", "/assets/b.js",
                                                     "/media/c.png")})
    status, first, cookie = get("/")
    assert status == 200 and cookie and cookie.startswith("SRVID="), cookie
    pinned = {get("/", cookie=cookie.split(";")[0])[1] for _ in range(6)}
    seen["sticky"] = (first[:3], pinned == {first}, "Max-Age" not in cookie)
    seen["admin_from_outside"] = get("/", host=ADMIN_HOST)[0]
    status, backend, _ = get("/", host=ADMIN_HOST, source="127.10.1.7")
    seen["admin_from_admin_net"] = (status, backend[:3])
    backend, echoed = websocket_backend()
    seen["websocket"] = (backend[:2], echoed)
    return seen


EXPECTED = {
    "api": [("api-01", 2), ("api-02", 2), ("api-03", 2)],
    "static": ["cdn"],
    "sticky": ("app", True, True),
    "admin_from_outside": 403,
    "admin_from_admin_net": (200, "adm"),
    "websocket": ("ws", b"ping over the tunnel"),
}


def run_with(proxy: ManagedProcess) -> dict[str, Any]:
    with proxy:
        proxy.wait_ready()  # type: ignore[attr-defined]
        return observe(proxy)


def test_envoy_routes_the_article_config(backends: None) -> None:
    assert run_with(Envoy(bootstrap(), name="envoy-seed")) == EXPECTED


def test_pointsman_routes_the_article_config_like_envoy(backends: None) -> None:
    assert run_with(Pointsman(bootstrap(), name="pointsman-seed")) == EXPECTED


def test_every_seed_bootstrap_is_accepted_by_envoy_and_pointsman(tmp_path: Path) -> None:
    import subprocess

    from proxy.bootstrap import load_bootstrap
    from tests.support.envoy import envoy_binary

    for path in sorted((REPO / "examples" / "seed_article").glob("*.yaml")):
        result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path),
                                 "--disable-hot-restart"], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 0, (path, result.stderr[-2000:])
        load_bootstrap(path)
