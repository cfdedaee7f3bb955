"""Differential: RBAC `authenticated.principal_name` (the client certificate's URI SAN, else
DNS SAN, else subject) and `direct_remote_ip` behind an mTLS listener, Envoy vs `pointsman
proxy`. Client certificates are made with openssl (tests/integration/controlplane/
certificates.py's way), with SPIFFE URI SANs as the mesh issues them."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3." \
      "HttpConnectionManager"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
SPIFFE = "spiffe://cluster.local/ns/default/sa/"


def _certificates(folder: Path) -> None:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=mesh-ca")
    leaves = {"server": "subjectAltName=IP:127.0.0.1",
              "a": f"subjectAltName=URI:{SPIFFE}a", "b": f"subjectAltName=URI:{SPIFFE}b",
              "dns": "subjectAltName=DNS:c.example", "plain": "basicConstraints=CA:FALSE"}
    for name, extension in leaves.items():
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-subj", f"/O=Acme/CN={name}")
        (folder / f"{name}.ext").write_text(extension + "\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")


def _authenticated(name: str) -> dict[str, Any]:
    return {"authenticated": {"principal_name": {"exact": name}}}


def _rbac() -> dict[str, Any]:
    return {"name": "envoy.filters.http.rbac", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
        "rules": {"action": "ALLOW", "policies": {
            "a-anywhere": {"permissions": [{"any": True}],
                           "principals": [_authenticated(SPIFFE + "a")]},
            "dns-san": {"permissions": [{"url_path": {"path": {"prefix": "/dns"}}}],
                        "principals": [_authenticated("c.example")]},
            "subject": {"permissions": [{"url_path": {"path": {"prefix": "/subject"}}}],
                        "principals": [_authenticated("CN=plain,O=Acme")]},
            "loopback-b": {"permissions": [{"url_path": {"path": {"prefix": "/loop"}}}],
                           "principals": [{"and_ids": {"ids": [
                               _authenticated(SPIFFE + "b"),
                               {"direct_remote_ip": {"address_prefix": "127.0.0.0",
                                                     "prefix_len": 8}}]}}]}}}}}


def bootstrap(port: int, backend: int, certs: Path) -> dict[str, Any]:
    tls = {"@type": TLS, "require_client_certificate": True, "common_tls_context": {
        "tls_certificates": [{"certificate_chain": {"filename": str(certs / "server.pem")},
                              "private_key": {"filename": str(certs / "server.key")}}],
        "validation_context": {"trusted_ca": {"filename": str(certs / "ca.pem")}}}}
    return {"static_resources": {
        "listeners": [{"name": "mtls", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": tls},
                "filters": [{"name": "envoy.filters.network.http_connection_manager",
                             "typed_config": {
                                 "@type": HCM, "stat_prefix": "in",
                                 "http_filters": [_rbac(), {
                                     "name": "envoy.filters.http.router", "typed_config": {
                                         "@type": "type.googleapis.com/envoy.extensions."
                                                  "filters.http.router.v3.Router"}}],
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": [{
                                         "match": {"prefix": "/"},
                                         "route": {"cluster": "app"}}]}]}}}]}]}],
        "clusters": [{"name": "app", "type": "STATIC", "connect_timeout": "1s",
                      "load_assignment": {"cluster_name": "app", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": backend}}}}]}]}}]}}


@pytest.fixture(scope="module")
def proxies(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Path, int, int, Envoy, Pointsman]]:
    certs = tmp_path_factory.mktemp("rbac-certs")
    _certificates(certs)
    backend = EchoBackend("app").start()
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(bootstrap(envoy_port, backend.port, certs), name="envoy-rbac-mtls")
    ours = Pointsman(bootstrap(ours_port, backend.port, certs), name="pointsman-rbac-mtls")
    try:
        envoy.wait_ready()
        ours.wait_ready()
        yield certs, envoy_port, ours_port, envoy, ours
    finally:
        envoy.stop()
        ours.stop()
        backend.stop()


def _get(certs: Path, port: int, client: str, path: str) -> int:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    context.load_cert_chain(str(certs / f"{client}.pem"), str(certs / f"{client}.key"))
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_authenticated_principals_like_envoy(
        proxies: tuple[Path, int, int, Envoy, Pointsman]) -> None:
    certs, envoy_port, ours_port, envoy, ours = proxies
    calls = [("a", "/x"), ("b", "/x"), ("b", "/loop"), ("dns", "/dns"), ("dns", "/x"),
             ("plain", "/subject"), ("plain", "/x"), ("a", "/subject")]
    expected = [_get(certs, envoy_port, client, path) for client, path in calls]
    actual = [_get(certs, ours_port, client, path) for client, path in calls]
    assert expected == [200, 403, 200, 200, 403, 200, 403, 200]
    assert actual == expected
    names = [f"http.in.rbac.{outcome}" for outcome in ("allowed", "denied")]
    assert [envoy.stat(name) for name in names] == [5, 3]
    assert [ours.stat(name) for name in names] == [5, 3]
