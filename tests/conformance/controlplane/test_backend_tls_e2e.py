"""BackendTLSPolicy end to end: a Gateway's proxy (real Envoy 1.40, then ours, from the same
bootstrap and control plane) originates TLS to a TLS echo backend as the policy says.

The backend is reached directly (an EndpointSlice, as a pod without a sidecar) and serves a
certificate for abc.example.com signed by a CA the ConfigMap holds. Both proxies must: send
the policy's hostname as SNI and answer 200 (backendtlspolicy.go "HTTP request sent to
Service with valid BackendTLSPolicy should succeed"); refuse a backend whose certificate
does not carry the name the policy verifies (subjectAltNames), and one whose policy has no
valid CA (never sending in clear), with a 5xx; present the Gateway's
`spec.tls.backend.clientCertificateRef` to a backend that requires a client certificate
(gateway-tls-backend-client-certificate.go); re-encrypt what a TLS listener in mode Terminate
decrypted for a TLSRoute (backendtlspolicy-tlsroute-terminate.go); and, on an HTTPS
listener, require a client certificate from the CA of `spec.tls.frontend`
(gateway-with-clientcertificate-validation.go): a client with one gets 200, one without is
refused in the handshake.
"""

from __future__ import annotations

import socket
import ssl
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import tls_files
from tests.support.http_backends import EchoBackend
from tests.support.mesh import MeshControlPlane, backend_of, request, start_gateway

pytestmark = pytest.mark.conformance

NET = "127.93"
GATEWAY_IP = f"{NET}.9.1"
BACKEND_IP = f"{NET}.3.1"
BACKEND_PORT = 9443
MTLS_BACKEND_IP = f"{NET}.3.2"


def service(name: str, address: str = BACKEND_IP) -> str:
    return f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec: {{ports: [{{name: btls, port: 443, appProtocol: HTTPS}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
endpoints: [{{addresses: [{address}]}}]
ports: [{{name: btls, port: {BACKEND_PORT}}}]
"""


def policy(name: str, target: str, configmap: str, extra: str = "") -> str:
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {target}, sectionName: btls}}]
  validation:
    caCertificateRefs: [{{group: "", kind: ConfigMap, name: {configmap}}}]
    hostname: abc.example.com
{extra}"""


def client_secret(certificate: tuple[Path, Path]) -> str:
    chain, key = ("".join(f"    {line}\n" for line in path.read_text().splitlines())
                  for path in certificate)
    return f"""---
apiVersion: v1
kind: Secret
metadata: {{name: gateway-client}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{chain}  tls.key: |
{key}"""


def tls_secret(name: str, certificate: tuple[Path, Path]) -> str:
    return client_secret(certificate).replace("gateway-client", name)


def mesh_yaml(ca: Path, client: tuple[Path, Path], frontend: tuple[Path, Path],
              https: tuple[Path, Path]) -> str:
    indented = "".join(f"    {line}\n" for line in ca.read_text().splitlines())
    routes = "".join(f"""  - matches: [{{path: {{type: Exact, value: /{name}}}}}]
    backendRefs: [{{name: {name}, port: 443}}]
""" for name in ("good", "san-mismatch", "no-ca", "mtls"))
    return (f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: backend-ca}}
data:
  ca.crt: |
{indented}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: pointsman
  addresses: [{{type: IPAddress, value: {GATEWAY_IP}}}]
  listeners:
  - {{name: http, port: 8088, protocol: HTTP}}
  - name: tls
    port: 8443
    protocol: TLS
    hostname: tls.example.com
    tls: {{mode: Terminate, certificateRefs: [{{name: frontend}}]}}
  - name: https
    port: 9443
    protocol: HTTPS
    hostname: abc.example.com
    tls: {{certificateRefs: [{{name: frontend-https}}]}}
  tls:
    backend: {{clientCertificateRef: {{name: gateway-client}}}}
    frontend:
      default:
        validation: {{caCertificateRefs: [{{group: "", kind: ConfigMap, name: backend-ca}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: terminated}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [tls.example.com]
  rules: [{{backendRefs: [{{name: good, port: 443}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: to-tls}}
spec:
  parentRefs: [{{name: edge, sectionName: http}}, {{name: edge, sectionName: https}}]
  rules:
{routes}"""
            + service("good") + service("san-mismatch") + service("no-ca")
            + policy("good", "good", "backend-ca")
            + policy("san-mismatch", "san-mismatch", "backend-ca",
                     "    subjectAltNames: [{type: Hostname, hostname: dce.example.com}]\n")
            + policy("no-ca", "no-ca", "missing-ca")
            + service("mtls", MTLS_BACKEND_IP) + policy("mtls", "mtls", "backend-ca")
            + client_secret(client) + tls_secret("frontend", frontend)
            + tls_secret("frontend-https", https))


def tls_backend(certificate: tuple[Path, Path], seen: list[str], *, host: str = BACKEND_IP,
                client_ca: Path | None = None) -> EchoBackend:
    """`client_ca`: the backend requires a client certificate signed by it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))

    def record(_sock: Any, name: str | None, _context: Any) -> None:
        seen.append(name or "")
    context.sni_callback = record
    name = "tls-backend" if client_ca is None else "mtls-backend"
    return EchoBackend(name, host=host, port=BACKEND_PORT, ssl_context=context)


def run(flavour: str, tmp_path: Path) -> dict[str, Any]:
    certificates = tls_files(tmp_path, ["abc.example.com", "gateway-client", "tls.example.com"])
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(mesh_yaml(certificates["ca"][0], certificates["gateway-client"],
                              certificates["tls.example.com"], certificates["abc.example.com"]))
    seen: list[str] = []
    with ExitStack() as stack:
        backend = tls_backend(certificates["abc.example.com"], seen).start()
        stack.callback(backend.stop)
        mtls = tls_backend(certificates["abc.example.com"], [], host=MTLS_BACKEND_IP,
                           client_ca=certificates["ca"][0]).start()
        stack.callback(mtls.stop)
        control_plane = MeshControlPlane(mesh)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        gateway = start_gateway(stack, flavour, control_plane, "edge")
        gateway.wait_ready()
        good = _until_answered(gateway)
        return {"good": good, "sni": sorted(set(seen)),
                "san-mismatch": _status("/san-mismatch"), "no-ca": _status("/no-ca"),
                "mtls": _status("/mtls"), "terminated": _terminated(certificates["ca"][0]),
                "client certificate": _https(certificates["ca"][0],
                                             certificates["gateway-client"]),
                "no client certificate": _https(certificates["ca"][0], None)}


def _status(path: str) -> int:
    return request((GATEWAY_IP, 8088), path, host="abc.example.com", timeout=5)[0]


def _terminated(ca: Path) -> tuple[str, str]:
    """Through the TLS listener (the client trusts the listener's certificate), an HTTP request
    inside reaches the TLS backend: the Gateway re-encrypted it."""
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection((GATEWAY_IP, 8443), timeout=5)
    with context.wrap_socket(raw, server_hostname="tls.example.com") as sock:
        sock.sendall(b"GET /t HTTP/1.1\r\nHost: abc.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode(), backend_of(body)


def _https(ca: Path, client: tuple[Path, Path] | None) -> str:
    """GET /good on the HTTPS listener, presenting `client` (or no certificate)."""
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(*client)
    try:
        raw = socket.create_connection((GATEWAY_IP, 9443), timeout=5)
        with context.wrap_socket(raw, server_hostname="abc.example.com") as sock:
            sock.sendall(b"GET /good HTTP/1.1\r\nHost: abc.example.com\r\n"
                         b"Connection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except (ssl.SSLError, ConnectionError):
        return "refused"
    return data.split(b" ")[1].decode() if data else "refused"


def _until_answered(proxy: Any) -> tuple[int, str]:
    deadline = time.monotonic() + 45
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            status, _headers, body = request((GATEWAY_IP, 8088), "/good", host="abc.example.com",
                                             timeout=3)
            last = (status, backend_of(body))
            if status == 200:
                return last
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"no 200 through the Gateway ({last}):\n{proxy.output()[-3000:]}")


EXPECTED = {"good": (200, "tls-backend"), "sni": ["abc.example.com"],
            "san-mismatch": 503, "no-ca": 503, "mtls": 200,
            "terminated": ("200", "tls-backend"),
            "client certificate": "200", "no client certificate": "refused"}


def test_envoy_gateway_originates_tls_as_the_policy_says(tmp_path: Path) -> None:
    assert run("envoy", tmp_path) == EXPECTED


def test_pointsman_gateway_originates_tls_like_envoy(tmp_path: Path) -> None:
    assert run("pointsman", tmp_path) == EXPECTED
