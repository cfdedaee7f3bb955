"""Differential: cluster `transport_socket_matches`, Envoy 1.40 vs Pointsman, one bootstrap.

Two backends behind one cluster: `tls` serves HTTPS only (a certificate for mtls.test from a
test CA), `plain` serves cleartext. The cluster chooses each endpoint's transport socket by its
`envoy.transport_socket_match` metadata (cluster.proto TransportSocketMatch):

- `matched-tls`: the TLS endpoint carries {tlsMode: istio} and matches a TLS socket; the plain
  endpoint matches nothing and uses the cluster's default (no transport_socket: raw_buffer).
- `default-tls`: the other way round. The cluster's transport_socket is TLS; the plain endpoint
  carries {tlsMode: disabled} and matches a raw_buffer socket; the TLS one matches nothing.

Each cluster has an HTTP health check, which Envoy runs over each host's own socket: with one
socket for the whole cluster a host would fail its check and never be reached. Through an HTTP
listener (HTTP/1.1 and HTTP/2 upstreams) and a tcp_proxy listener, both proxies must reach both
backends, and count `<cluster>.<match>.total_match_count` alike.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import UPSTREAM_TLS, server_ssl, tcp_proxy, tls_files
from tests.support.bootstraps import H2_OPTIONS, HCM_TYPE, ROUTER
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy

pytestmark = pytest.mark.conformance

RAW = {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}
HEALTH = {"timeout": "1s", "interval": "0.3s", "no_traffic_interval": "0.3s",
          "unhealthy_threshold": 1, "healthy_threshold": 1,
          "http_health_check": {"path": "/healthz"}}


def _tls_socket(ca: Path, alpn: list[str]) -> dict[str, Any]:
    return {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "mtls.test", "common_tls_context": {
            "alpn_protocols": alpn,
            "validation_context": {
                "trusted_ca": {"filename": str(ca)},
                "match_typed_subject_alt_names": [
                    {"san_type": "DNS", "matcher": {"exact": "mtls.test"}}]}}}}


def _endpoint(port: int, metadata: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"endpoint": {"address": {"socket_address": {
        "address": "127.0.0.1", "port_value": port}}}}
    if metadata is not None:
        entry["metadata"] = {"filter_metadata": {"envoy.transport_socket_match": metadata}}
    return entry


def _clusters(ca: Path, ports: dict[str, int], *, h2: bool) -> list[dict[str, Any]]:
    tls = _tls_socket(ca, ["h2"] if h2 else [])
    extra: dict[str, Any] = {"typed_extension_protocol_options": H2_OPTIONS} if h2 else {
        "health_checks": [HEALTH]}

    def cluster(name: str, endpoints: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return {"name": name, "type": "STATIC", "connect_timeout": "1s",
                "load_assignment": {"cluster_name": name,
                                    "endpoints": [{"lb_endpoints": endpoints}]},
                **extra, **fields}

    return [
        cluster("matched-tls", [_endpoint(ports["tls"], {"tlsMode": "istio"}),
                                _endpoint(ports["plain"], None)],
                transport_socket_matches=[
                    {"name": "tlsMode-istio", "match": {"tlsMode": "istio"},
                     "transport_socket": tls}]),
        cluster("default-tls", [_endpoint(ports["tls"], None),
                                _endpoint(ports["plain"], {"tlsMode": "disabled"})],
                transport_socket=tls,
                transport_socket_matches=[
                    {"name": "plaintext", "match": {"tlsMode": "disabled"},
                     "transport_socket": RAW}]),
    ]


def _bootstrap(ca: Path, ports: dict[str, int], http_port: int, tcp_port: int, *,
               h2: bool) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/{name}/"}, "route": {"cluster": name}}
              for name in ("matched-tls", "default-tls")]
    hcm = {"@type": HCM_TYPE, "stat_prefix": "ingress", "http_filters": [ROUTER],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                               "routes": routes}]}}
    listeners = [{"name": "http", "address": {"socket_address": {
        "address": "127.0.0.1", "port_value": http_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}]}]
    if not h2:
        listeners.append({"name": "tcp", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": tcp_port}},
            "filter_chains": [{"filters": [tcp_proxy("matched-tls")]}]})
    return {"static_resources": {"listeners": listeners,
                                 "clusters": _clusters(ca, ports, h2=h2)}}


@contextlib.contextmanager
def _backends(tmp_path: Path, *, h2: bool) -> Iterator[tuple[Path, dict[str, int]]]:
    files = tls_files(tmp_path, ["mtls.test"])
    context = server_ssl(*files["mtls.test"], alpn=["h2"] if h2 else None)
    with EchoBackend("tls", ssl_context=context) as tls, \
            EchoBackend("plain", http2=h2) as plain:
        yield files["ca"][0], {"tls": tls.port, "plain": plain.port}


def _http_backend(port: int, path: str) -> str | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        return str(json.loads(body)["backend"]) if response.status == 200 else None
    finally:
        connection.close()


def _tcp_backend(port: int) -> str | None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return str(json.loads(body)["backend"]) if head.startswith(b"HTTP/1.1 200") else None


def _reached(send: Any, timeout: float = 20.0) -> set[str]:
    """Backends reached within `timeout` (stops once both were)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while seen != {"tls", "plain"} and time.monotonic() < deadline:
        found = send()
        if found is not None:
            seen.add(found)
        else:
            time.sleep(0.1)
    return seen


def _observe(proxy: AdminProxy, http_port: int, tcp_port: int, *, h2: bool
             ) -> dict[str, Any]:
    proxy.wait_ready()
    seen: dict[str, Any] = {
        name: _reached(lambda name=name: _http_backend(http_port, f"/{name}/x"))
        for name in ("matched-tls", "default-tls")}
    if not h2:
        seen["tcp_proxy"] = _reached(lambda: _tcp_backend(tcp_port))
    for stat in ("matched-tls.tlsMode-istio", "matched-tls.default",
                 "default-tls.plaintext", "default-tls.default"):
        seen[stat] = proxy.stat(f"cluster.{stat}.total_match_count")
    return seen


@pytest.mark.parametrize("h2", [False, True], ids=["http1-health-checked", "http2"])
def test_each_endpoint_uses_its_matched_socket_like_envoy(tmp_path: Path, h2: bool) -> None:
    results = {}
    with _backends(tmp_path, h2=h2) as (ca, ports):
        for kind, start in (("envoy", Envoy), ("pointsman", Pointsman)):
            http_port, tcp_port = free_port(), free_port()
            with start(_bootstrap(ca, ports, http_port, tcp_port, h2=h2),
                       name=f"{kind}-tsmatch") as proxy:
                results[kind] = _observe(proxy, http_port, tcp_port, h2=h2)
    expected_reach = {"tls", "plain"}
    assert results["envoy"]["matched-tls"] == expected_reach
    assert results["envoy"]["default-tls"] == expected_reach
    assert results["envoy"]["matched-tls.tlsMode-istio"] == 1
    assert results["envoy"]["matched-tls.default"] == 1
    assert results["pointsman"] == results["envoy"]
