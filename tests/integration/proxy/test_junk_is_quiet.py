"""Junk on every kind of listener the sidecar has: HTTP/1.1, AUTO and HTTP/2 codecs,
proxy_protocol and tls_inspector listener filters, TLS termination (ALPN h2 and http/1.1).
Each bad connection is answered or closed and counted (downstream_cx_protocol_error,
downstream_listener_filter_error, no_filter_chain_match); nothing is logged at info or above
(it was three tracebacks per junk connection on an h2c listener)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import (
    DOWNSTREAM_TLS,
    PROXY_PROTOCOL,
    TLS_INSPECTOR,
    static_cluster,
    tcp_proxy,
    tls_files,
)
from tests.support.bootstraps import HCM_TYPE, ROUTER
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
JUNK = {
    "http1": b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    "garbage": b"\x00\x01\x02garbage\r\n\r\n",
    "bad method": b"G\x00T / HTTP/1.1\r\n\r\n",
    "huge header": b"GET / HTTP/1.1\r\nhost: x\r\nx: " + b"a" * 100_000 + b"\r\n\r\n",
    "tls junk": b"\x16\x03\x01\x00\x05hello",
    "preface, bad frame": PREFACE + b"\x00\x00\x01\x09\x00\x00\x00\x00\x00\x00",
    "preface, random": PREFACE + os.urandom(300),
    "half preface": PREFACE[:10],
    "proxy v1 cut": b"PROXY TCP4 1.2.3.4\r\n",
    "proxy v2 bad": b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\xff" + bytes(10),
    "nothing": b"",
    "random": os.urandom(1000),
}
KINDS = ("h1", "auto", "h2", "proxy_protocol", "tls_inspector", "tls")


def hcm(codec: str) -> dict[str, Any]:
    return {"name": "hcm", "typed_config": {
        "@type": HCM_TYPE, "stat_prefix": codec.lower(), "codec_type": codec,
        "http_filters": [ROUTER], "route_config": {"virtual_hosts": [{
            "name": "all", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]}}}


def bootstrap(ports: dict[str, int], cert: Path, key: Path) -> dict[str, Any]:
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS, "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                  "private_key": {"filename": str(key)}}],
            "alpn_protocols": ["h2", "http/1.1"]}}}

    def listener(name: str, chains: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"name": name, "filter_chains": chains, **extra, "address": {
            "socket_address": {"address": "127.0.0.1", "port_value": ports[name]}}}

    return {"static_resources": {"clusters": [static_cluster("b", [free_port()])], "listeners": [
        listener("h1", [{"filters": [hcm("HTTP1")]}]),
        listener("auto", [{"filters": [hcm("AUTO")]}]),
        listener("h2", [{"filters": [hcm("HTTP2")]}]),
        listener("proxy_protocol", [{"filters": [tcp_proxy("b")]}], listener_filters=[
            {"name": "pp", "typed_config": {"@type": PROXY_PROTOCOL}}]),
        listener("tls_inspector", [{"filter_chain_match": {"transport_protocol": "tls"},
                                    "filters": [hcm("AUTO")], "transport_socket": tls}],
                 listener_filters=[{"name": "ti", "typed_config": {"@type": TLS_INSPECTOR}}]),
        listener("tls", [{"filters": [hcm("AUTO")], "transport_socket": tls}]),
    ]}}


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[Pointsman, dict[str, int]]]:
    cert, key = tls_files(tmp_path, ["proxy.test"])["proxy.test"]
    ports = {kind: free_port() for kind in KINDS}
    with Pointsman(bootstrap(ports, cert, key), extra_args=("--log-level", "info")) as process:
        process.wait_ready()
        yield process, ports


def send(port: int, payload: bytes, *, reset: bool) -> None:
    """Send `payload`; then either read what comes back for a moment or reset at once."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
        if reset:  # SO_LINGER 0: close() sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        sock.settimeout(0.2)
        with contextlib.suppress(OSError):
            sock.recv(65536)


def send_tls(port: int, payload: bytes, alpn: str) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(payload)
            sock.settimeout(0.2)
            sock.recv(65536)


def logged(process: Pointsman) -> list[str]:
    """Log lines, without asyncio debug mode's slow-callback warnings (tests/conftest.py)."""
    return [line for line in process.output().splitlines()
            if not re.search(r"took \d+\.\d+ seconds", line)]


def test_junk_on_every_listener_kind_is_counted_and_not_logged(
        proxy: tuple[Pointsman, dict[str, int]]) -> None:
    process, ports = proxy
    before = logged(process)
    for port in ports.values():
        for payload in JUNK.values():
            send(port, payload, reset=False)
            send(port, payload, reset=True)
    for kind in ("tls_inspector", "tls"):
        for payload in JUNK.values():
            for alpn in ("h2", "http/1.1"):
                send_tls(ports[kind], payload, alpn)
    process.wait_until(lambda: process.stat("http.http2.downstream_cx_protocol_error") >= 10,
                       20, "counted")
    assert process.stat("http.http1.downstream_cx_protocol_error") > 0
    assert process.stat("http.auto.downstream_cx_protocol_error") > 0
    assert process.stat(f"listener.127.0.0.1_{ports['proxy_protocol']}."
                        "downstream_listener_filter_error") > 0
    assert process.stat(f"listener.127.0.0.1_{ports['tls_inspector']}."
                        "no_filter_chain_match") > 0
    assert logged(process) == before  # at info: nothing about any of it
    assert process.alive()
