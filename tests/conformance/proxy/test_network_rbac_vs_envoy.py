"""envoy.filters.network.rbac in front of tcp_proxy, same bootstrap to Envoy 1.40 and
`pointsman proxy`: the same connections allowed and closed, the same stats and the same
access-log lines (%CONNECTION_TERMINATION_DETAILS%, bytes).

The backend speaks first (`NAME SNI\\n`), as Envoy's tcp_proxy connects upstream before the
filter decides on the first downstream byte: a denied client still reads the greeting, and
its bytes never reach the backend."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import (
    DOWNSTREAM_TLS,
    PROXY_PROTOCOL,
    TLS_INSPECTOR,
    TaggedServer,
    listener,
    read_line,
    static_cluster,
    tcp_proxy,
)
from tests.support.envoy import Envoy
from tests.support.identity import client_context, now, write_ca
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
FORMAT = ("%DOWNSTREAM_LOCAL_PORT% %CONNECTION_TERMINATION_DETAILS% %RESPONSE_FLAGS% "
          "%BYTES_RECEIVED% %BYTES_SENT% %UPSTREAM_CLUSTER%\n")
FRONTEND = "spiffe://cluster.local/ns/default/sa/frontend"
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def policy(permissions: list[Any], principals: list[Any], action: str = "ALLOW",
           name: str = "p") -> dict[str, Any]:
    return {"action": action, "policies": {name: {"permissions": permissions,
                                                  "principals": principals}}}


ANY = [{"any": True}]
SNI = ("sni_inspected", "sni_terminated")  # TLS listeners with and without tls_inspector
PP = ("pp_remote", "pp_source", "pp_direct", "pp_no_len")  # listeners behind the PROXY protocol
# name -> (the filter's config but stat_prefix, what the plain client should see)
CASES: dict[str, tuple[dict[str, Any], bool]] = {
    # ALLOW with no matching policy; a shadow DENY that matches.
    "allow_miss": ({"rules": policy([{"destination_port": 1}], ANY),
                    "shadow_rules": policy(ANY, ANY, "DENY")}, False),
    # DENY matching a policy whose name has a space (termination details replace it by '_').
    "deny_hit": ({"rules": policy([{"not_rule": {"destination_port": 1}}], ANY, "DENY",
                                  name="no entry")}, False),
    "allow_range": ({"rules": policy(
        [{"destination_port_range": {"start": 1, "end": 65535}}],
        [{"direct_remote_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}}])}, True),
    # url_path in a network filter: accepted, evaluated against empty headers.
    "url_path": ({"rules": policy(ANY, [{"not_id": {"url_path": {"path": {"exact": "/"}}}}]),
                  "shadow_rules": policy(ANY, [{"url_path": {"path": {"prefix": "/"}}}]),
                  "shadow_rules_stat_prefix": "dry_"}, True),
    "log_only": ({"rules": policy(ANY, ANY, "LOG")}, True),
    "continuous": ({"rules": policy(ANY, [{"remote_ip": {"address_prefix": "127.0.0.1",
                                                         "prefix_len": 32}}]),
                    "enforcement_type": "CONTINUOUS"}, True),
    "plain_not_tls": ({"rules": policy(ANY, [{"authenticated": {}}])}, False),
    # rules without a policy: ALLOW denies every connection, DENY none (istiod's empty ALLOW)
    "allow_empty": ({"rules": {"action": "ALLOW"}}, False),
    "deny_empty": ({"rules": {"action": "DENY"}}, True),
}


def rbac(prefix: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": "envoy.filters.network.rbac",
            "typed_config": {"@type": RBAC, "stat_prefix": prefix, **body}}


def bootstrap(log: Path, ports: dict[str, int], backend: int, tls: dict[str, Any]
              ) -> dict[str, Any]:
    access_log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": FILE_LOG, "path": str(log),
        "log_format": {"text_format_source": {"inline_string": FORMAT}}}}]
    listeners = [listener(name, ports[name], [{"filters": [
        rbac(name, body), tcp_proxy("up", access_log=access_log)]}])
        for name, (body, _) in CASES.items()]
    listeners.append(listener("mtls", ports["mtls"], [{
        "filters": [rbac("mtls.", {"rules": policy(ANY, [{"authenticated": {
            "principal_name": {"exact": FRONTEND}}}])}),
            tcp_proxy("up", access_log=access_log)],
        "transport_socket": {"name": "envoy.transport_sockets.tls",
                             "typed_config": {"@type": DOWNSTREAM_TLS, **tls}}}]))
    # requested_server_name is the SNI tls_inspector saw: without it, empty (Envoy 1.40).
    for name in SNI:
        inspector = {"listener_filters": [{"name": "envoy.filters.listener.tls_inspector",
                                           "typed_config": {"@type": TLS_INSPECTOR}}]} \
            if name == "sni_inspected" else {}
        listeners.append(listener(name, ports[name], [{
            "filters": [rbac(name, {"rules": policy(
                [{"requested_server_name": {"exact": "vault.test"}}], ANY)}),
                tcp_proxy("up", access_log=access_log)],
            "transport_socket": {"name": "envoy.transport_sockets.tls",
                                 "typed_config": {"@type": DOWNSTREAM_TLS, **tls}}}],
            **inspector))
    # Behind the PROXY protocol: remote_ip and source_ip are the header's client (192.0.2.7),
    # direct_remote_ip the socket's peer (127.0.0.1).
    for name, principal in (
            ("pp_remote", {"remote_ip": {"address_prefix": "192.0.2.7", "prefix_len": 32}}),
            ("pp_source", {"source_ip": {"address_prefix": "127.0.0.0", "prefix_len": 8}}),
            ("pp_direct", {"direct_remote_ip": {"address_prefix": "127.0.0.0",
                                                "prefix_len": 8}}),
            # prefix_len unset is 0, as Envoy reads it: every IPv4 address
            ("pp_no_len", {"direct_remote_ip": {"address_prefix": "10.0.0.0"}})):
        listeners.append(listener(name, ports[name], [{"filters": [
            rbac(name, {"rules": policy(ANY, [principal])}),
            tcp_proxy("up", access_log=access_log)]}], listener_filters=[{
                "name": "envoy.filters.listener.proxy_protocol",
                "typed_config": {"@type": PROXY_PROTOCOL}}]))
    for name, port in (("http_allowed", ports["http_allowed"]),
                       ("http_denied", ports["http_denied"])):
        principal = {"any": True} if name == "http_allowed" else {"not_id": {"any": True}}
        listeners.append(listener(name, port, [{"filters": [
            rbac(name, {"rules": policy(ANY, [principal])}), http_ok(name)]}]))
    return {"static_resources": {"listeners": listeners,
                                 "clusters": [static_cluster("up", [backend])]}}


def http_ok(name: str) -> dict[str, Any]:
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": name, "http_filters": [
            {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
        "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"}, "direct_response": {"status": 200}}]}]}}}


def http_status(port: int) -> bytes:
    """The response's status line, b"" when the connection was closed instead."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(REQUEST)
        try:
            return sock.recv(4096).split(b"\r\n", 1)[0]
        except ConnectionResetError:
            return b""


def talk(sock: socket.socket | ssl.SSLSocket, rounds: int) -> tuple[str, list[bytes]]:
    """The greeting, then `rounds` echoes of b"hello" (b"" once the proxy closed)."""
    greeting = read_line(sock)  # type: ignore[arg-type]
    echoes = []
    for _ in range(rounds):
        try:
            sock.sendall(b"hello")
            echoes.append(sock.recv(5))
        except OSError:
            echoes.append(b"")
    return greeting, echoes


def drive(ports: dict[str, int], contexts: dict[str, ssl.SSLContext]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for name in CASES:
        with socket.create_connection(("127.0.0.1", ports[name]), timeout=5) as sock:
            seen[name] = talk(sock, 2)
    for who, context in contexts.items():
        with socket.create_connection(("127.0.0.1", ports["mtls"]), timeout=5) as raw, \
                context.wrap_socket(raw) as tls:
            seen[f"mtls-{who}"] = talk(tls, 1)
    for name in ("http_allowed", "http_denied"):
        seen[name] = http_status(ports[name])
    for name in SNI:
        for server_name in ("vault.test", "other.test"):
            with socket.create_connection(("127.0.0.1", ports[name]), timeout=5) as raw, \
                    contexts["frontend"].wrap_socket(raw, server_hostname=server_name) as tls:
                seen[f"{name}-{server_name}"] = talk(tls, 1)
    for name in PP:
        with socket.create_connection(("127.0.0.1", ports[name]), timeout=5) as sock:
            # the header's destination port is the listener's: the log lines name it
            sock.sendall(f"PROXY TCP4 192.0.2.7 127.0.0.1 4321 {ports[name]}\r\n".encode())
            seen[name] = talk(sock, 1)
    return seen


STATS = [f"{name}.rbac.{kind}" for name in CASES
         for kind in ("allowed", "denied", "shadow_allowed", "shadow_denied")] + [
    "url_path.rbac.dry_.shadow_allowed", "url_path.rbac.dry_.shadow_denied",
    "mtls.rbac.allowed", "mtls.rbac.denied", "tcp.tcp.downstream_cx_rx_bytes_total",
    "cluster.up.upstream_cx_tx_bytes_total", "cluster.up.upstream_cx_total",
    "http_allowed.rbac.allowed", "http_denied.rbac.denied", "http.http_denied.downstream_rq_total",
    "http.http_allowed.downstream_rq_total",
    *(f"{name}.rbac.{kind}" for name in (*PP, *SNI) for kind in ("allowed", "denied"))]


def test_network_rbac_matches_envoy(tmp_path: Path) -> None:
    authority, _flags = write_ca(tmp_path)
    server = authority.issue("default", "backend", now())
    (tmp_path / "server.pem").write_bytes(server.certificate_chain)
    (tmp_path / "server.key").write_bytes(server.private_key)
    tls = {"require_client_certificate": True, "common_tls_context": {
        "tls_certificates": [{"certificate_chain": {"filename": str(tmp_path / "server.pem")},
                              "private_key": {"filename": str(tmp_path / "server.key")}}],
        "validation_context": {"trusted_ca": {"filename": str(tmp_path / "ca.pem")}}}}
    bundle = authority.certificate_pem()
    contexts = {who: client_context(bundle, authority.issue("default", who, now()), tmp_path)
                for who in ("frontend", "intruder")}
    backend = TaggedServer("a")
    results: dict[str, Any] = {}
    try:
        for kind in ("envoy", "pointsman"):
            log = tmp_path / f"{kind}.log"
            ports = {name: free_port() for name in (
                *CASES, "mtls", "http_allowed", "http_denied", *PP, *SNI)}
            config = bootstrap(log, ports, backend.port, tls)
            proxy = (Envoy(config, extra_args=("--concurrency", "1",
                                               "--file-flush-interval-msec", "100"))
                     if kind == "envoy" else Pointsman(config))
            with proxy:
                proxy.wait_ready()
                seen = drive(ports, contexts)
                lines = _wait_for_lines(log, len(CASES) + 2 + len(PP) + 2 * len(SNI))
                by_port = {str(port): name for name, port in ports.items()}
                results[kind] = (seen, sorted(_named(line, by_port) for line in lines),
                                 {name: proxy.stat(name) for name in STATS})
    finally:
        backend.stop()
    assert results["pointsman"][0] == results["envoy"][0]
    assert results["pointsman"][1] == results["envoy"][1]
    assert results["pointsman"][2] == results["envoy"][2]
    seen = results["envoy"][0]
    for name, (_, allowed) in CASES.items():
        assert seen[name] == ("a", [b"hello", b"hello"] if allowed else [b"", b""]), name
    assert seen["mtls-frontend"] == ("a", [b"hello"])
    assert seen["mtls-intruder"] == ("a", [b""])
    assert (seen["http_allowed"], seen["http_denied"]) == (b"HTTP/1.1 200 OK", b"")
    assert [seen[name][1] for name in PP] == [[b"hello"], [b""], [b"hello"], [b"hello"]]
    assert [seen[f"{name}-{server_name}"][1] for name in SNI
            for server_name in ("vault.test", "other.test")] == [[b"hello"], [b""], [b""], [b""]]


def _named(line: str, by_port: dict[str, str]) -> str:
    port, _, rest = line.partition(" ")
    return f"{by_port[port]} {rest}"


def _wait_for_lines(path: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 15
    found: list[str] = []
    while time.monotonic() < deadline:
        found = path.read_text().splitlines() if path.exists() else []
        if len(found) >= count:
            break
        time.sleep(0.1)
    return found
