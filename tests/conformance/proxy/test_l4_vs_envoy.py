"""Differential tests: the same bootstrap to real Envoy and to `pointsman proxy` must choose
the same backends (issue 3, "Done means"): SNI routing to three TLS backends (passthrough
with no key on the proxy, plus termination and re-origination), and tcp_proxy weighted
clusters."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import (
    DOWNSTREAM_TLS,
    TLS_INSPECTOR,
    UPSTREAM_TLS,
    TaggedServer,
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

NAMES = ["a.test", "b.test", "c.test", "term.test"]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return tls_files(tmp_path_factory.mktemp("certs"), NAMES)


@pytest.fixture
def tls_backends(certs: dict[str, tuple[Path, Path]]) -> Iterator[dict[str, TaggedServer]]:
    servers = {name: TaggedServer(name.split(".")[0], server_ssl(*certs[name]))
               for name in ("a.test", "b.test", "c.test")}
    yield servers
    for server in servers.values():
        server.stop()


def _sni_bootstrap(port: int, backends: dict[str, TaggedServer],
                   certs: dict[str, tuple[Path, Path]]) -> dict[str, Any]:
    def chain(names: list[str], cluster: str, **extra: Any) -> dict[str, Any]:
        return {"filter_chain_match": {"server_names": names}, "filters": [tcp_proxy(cluster)],
                **extra}

    term_cert, term_key = certs["term.test"]
    ca_cert = certs["ca"][0]
    termination = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": DOWNSTREAM_TLS, "common_tls_context": {"tls_certificates": [{
            "certificate_chain": {"filename": str(term_cert)},
            "private_key": {"filename": str(term_key)}}]}}}
    origination = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": UPSTREAM_TLS, "sni": "c.test", "common_tls_context": {
            "validation_context": {"trusted_ca": {"filename": str(ca_cert)}}}}}
    return {
        "node": {"id": "diff", "cluster": "diff"},
        "static_resources": {
            "listeners": [listener("sni", port, [
                chain(["a.test"], "a"),
                chain(["b.test", "*.wild.test"], "b"),
                chain(["c.test"], "c"),
                chain(["term.test"], "c_tls", transport_socket=termination),
            ], listener_filters=[{"name": "envoy.filters.listener.tls_inspector",
                                  "typed_config": {"@type": TLS_INSPECTOR}}])],
            "clusters": [
                static_cluster("a", [backends["a.test"].port]),
                static_cluster("b", [backends["b.test"].port]),
                static_cluster("c", [backends["c.test"].port]),
                static_cluster("c_tls", [backends["c.test"].port],
                               transport_socket=origination),
            ],
        },
    }


def _greeting_via(port: int, server_name: str, ca: Path) -> str:
    """Connect with TLS and SNI `server_name`; the backend's greeting, or 'closed'."""
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False  # the wildcard name has no matching certificate
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname=server_name) as sock:
            return read_line(sock) or "closed"
    except (ssl.SSLError, ConnectionError):
        return "closed"


def test_sni_routing_matches_envoy(tls_backends: dict[str, TaggedServer],
                                   certs: dict[str, tuple[Path, Path]]) -> None:
    cases = ["a.test", "b.test", "c.test", "x.wild.test", "term.test", "nothing.test"]
    results = {}
    for kind in ("envoy", "pointsman"):
        port = free_port()
        bootstrap = _sni_bootstrap(port, tls_backends, certs)
        proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
        with proxy:
            proxy.wait_ready()
            results[kind] = {name: _greeting_via(port, name, certs["ca"][0]) for name in cases}
    assert results["pointsman"] == results["envoy"]
    # And what both chose is what the config says (not the same mistake twice).
    assert results["envoy"] == {
        "a.test": "a a.test", "b.test": "b b.test", "c.test": "c c.test",
        "x.wild.test": "b x.wild.test", "term.test": "c c.test", "nothing.test": "closed",
    }


def test_weighted_clusters_split_like_envoy() -> None:
    backends = [TaggedServer("light"), TaggedServer("heavy")]
    connections = 120
    shares = {}
    try:
        for kind in ("envoy", "pointsman"):
            port = free_port()
            bootstrap = {"static_resources": {
                "listeners": [listener("weighted", port, [{"filters": [
                    tcp_proxy(weighted=[("light", 1), ("heavy", 3)])]}])],
                "clusters": [static_cluster("light", [backends[0].port]),
                             static_cluster("heavy", [backends[1].port])],
            }}
            proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
            with proxy:
                proxy.wait_ready()
                chosen = []
                for _ in range(connections):
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                        chosen.append(read_line(sock).strip())
            assert set(chosen) <= {"light", "heavy"}
            shares[kind] = chosen.count("heavy") / connections
    finally:
        for server in backends:
            server.stop()
    # Weight 3 of 4: both proxies near 0.75 (binomial sd ~0.04 at 120 draws; 0.15 = 3.8 sd).
    assert abs(shares["envoy"] - 0.75) < 0.15
    assert abs(shares["pointsman"] - 0.75) < 0.15
    assert abs(shares["pointsman"] - shares["envoy"]) < 0.2


def test_stats_names_and_values_match_envoy() -> None:
    backend = TaggedServer("a")
    compared = ["cluster.backend.upstream_cx_total", "cluster.backend.upstream_cx_active",
                "tcp.tcp.downstream_cx_total", "tcp.tcp.downstream_cx_rx_bytes_total",
                "tcp.tcp.downstream_cx_tx_bytes_total", "tcp.tcp.downstream_cx_no_route",
                "listener.{address}.downstream_cx_total", "listener.{address}.downstream_cx_active",
                "listener.{address}.no_filter_chain_match", "cluster.backend.membership_total",
                "listener.{address}.downstream_cx_destroy", "cluster.backend.upstream_cx_destroy",
                # the client closes first: the upstream's close answers ours, a remote close
                "cluster.backend.upstream_cx_destroy_remote",
                "cluster.backend.upstream_cx_destroy_local",
                "cluster.backend.upstream_cx_destroy_remote_with_active_rq",
                "cluster.backend.upstream_cx_destroy_local_with_active_rq",
                "cluster.backend.upstream_cx_rx_bytes_total",
                "cluster.backend.upstream_cx_tx_bytes_total",
                "cluster.backend.upstream_rq_total", "cluster.backend.upstream_rq_active"]
    seen: dict[str, dict[str, Any]] = {}
    try:
        for kind in ("envoy", "pointsman"):
            port = free_port()
            bootstrap = {"static_resources": {
                "listeners": [listener("l4", port, [{"filters": [tcp_proxy("backend")]}])],
                "clusters": [static_cluster("backend", [backend.port])]}}
            proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
            with proxy:
                proxy.wait_ready()
                for _ in range(3):
                    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                        assert read_line(sock) == "a"
                        sock.sendall(b"12345")
                        assert sock.recv(5) == b"12345"
                names = [name.format(address=f"127.0.0.1_{port}") for name in compared]
                active = names[1]
                proxy.wait_until(lambda p=proxy, n=active: p.stat(n) == 0, 10, "closed")
                values = {name.replace(str(port), "PORT"): proxy.stat(name) for name in names}
                _, text = proxy.admin("/stats/prometheus")
                line = next(x for x in text.splitlines()
                            if x.startswith("envoy_cluster_upstream_cx_total{"))
                seen[kind] = {"stats": values, "prometheus": line}
    finally:
        backend.stop()
    assert seen["pointsman"] == seen["envoy"]


def test_transport_protocol_and_alpn_matching_like_envoy(
        certs: dict[str, tuple[Path, Path]]) -> None:
    backends = {"h2": TaggedServer("h2", server_ssl(*certs["a.test"], alpn=["h2"])),
                "tls": TaggedServer("tls", server_ssl(*certs["a.test"])),
                "plain": TaggedServer("plain")}
    chains = [
        {"filter_chain_match": {"transport_protocol": "tls", "application_protocols": ["h2"]},
         "filters": [tcp_proxy("h2")]},
        {"filter_chain_match": {"transport_protocol": "tls"}, "filters": [tcp_proxy("tls")]},
        {"filters": [tcp_proxy("plain")]},
    ]

    def tls_greeting(port: int, alpn: list[str]) -> str:
        context = ssl.create_default_context(cafile=str(certs["ca"][0]))
        context.check_hostname = False
        context.set_alpn_protocols(alpn)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="a.test") as sock:
                return read_line(sock) or "closed"
        except (ssl.SSLError, ConnectionError):
            return "closed"

    def plain_greeting(port: int) -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"hello\n")  # tls_inspector needs a first byte to decide
            return read_line(sock) or "closed"

    results = {}
    try:
        for kind in ("envoy", "pointsman"):
            port = free_port()
            bootstrap = {"static_resources": {
                "listeners": [listener("alpn", port, chains, listener_filters=[
                    {"name": "envoy.filters.listener.tls_inspector",
                     "typed_config": {"@type": TLS_INSPECTOR}}])],
                "clusters": [static_cluster(name, [server.port])
                             for name, server in backends.items()]}}
            proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
            with proxy:
                proxy.wait_ready()
                results[kind] = {"h2": tls_greeting(port, ["h2", "http/1.1"]),
                                 "http/1.1": tls_greeting(port, ["http/1.1"]),
                                 "no alpn": tls_greeting(port, []),
                                 "plain": plain_greeting(port)}
    finally:
        for server in backends.values():
            server.stop()
    assert results["pointsman"] == results["envoy"]
    assert results["envoy"] == {"h2": "h2 a.test", "http/1.1": "tls a.test",
                                "no alpn": "tls a.test", "plain": "plain"}
