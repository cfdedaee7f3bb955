"""Differential: listener configs Envoy 1.40 accepts that we used to refuse.

Measured on Envoy 1.40: a static listener without `name` gets a random UUID as its name
(`/listeners` shows `UUID::ADDRESS`) and its stats use the address; a filter chain with a TLS
transport socket and no network filters is accepted, and each connection it selects is
closed at once ("closing connection ...: no filters") without a TLS handshake, counted in
downstream_cx_total / downstream_cx_destroy.
"""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import DOWNSTREAM_TLS, listener, tls_files
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _bootstrap(port: int, cert: Path, key: Path) -> dict[str, Any]:
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS, "common_tls_context": {"tls_certificates": [{
            "certificate_chain": {"filename": str(cert)},
            "private_key": {"filename": str(key)}}]}}}
    unnamed = listener("", port, [{"transport_socket": tls}])
    del unnamed["name"]
    return {"static_resources": {"listeners": [unnamed]}}


def _handshake_fails(port: int) -> bool:
    """True when the proxy closes before a TLS handshake. (Whether the client then sees EOF or
    a reset depends on whether its ClientHello arrived before the close: not compared.)"""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            with context.wrap_socket(sock, server_hostname="a.test"):
                return False
        except (ssl.SSLError, OSError):
            return True


def test_unnamed_listener_with_a_filterless_tls_chain_closes_like_envoy(
        tmp_path: Path) -> None:
    cert, key = tls_files(tmp_path, ["a.test"])["a.test"]
    seen: dict[str, Any] = {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        bootstrap = _bootstrap(port, cert, key)
        proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
        with proxy:
            proxy.wait_ready()
            outcomes = [_handshake_fails(port) for _ in range(2)]
            scope = f"listener.127.0.0.1_{port}."
            proxy.wait_until(lambda p=proxy, s=scope: p.stat(s + "downstream_cx_destroy") == 2,
                             10, "connections closed")
            _, listeners = proxy.admin("/listeners")
            seen[kind] = {
                "outcomes": outcomes,
                "stats": [proxy.stat(scope + name) for name in
                          ("downstream_cx_total", "downstream_cx_destroy",
                           "downstream_cx_active")],
                "listeners": re.sub(UUID, "UUID", listeners.strip()).replace(str(port), "P"),
            }
    assert seen["envoy"] == {"outcomes": [True, True], "stats": [2, 2, 0],
                             "listeners": "UUID::127.0.0.1:P"}
    assert seen["pointsman"] == seen["envoy"]
