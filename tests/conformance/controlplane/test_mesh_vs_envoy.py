"""The same mesh with Envoy sidecars and with Pointsman sidecars: the same routing.

One control plane (`--mesh`) compiles the mesh below; each run starts every sidecar and the
Gateway's proxy as one flavour (real Envoy 1.40, then ours) from the same bootstrap, and the
same requests are sent through the caller's sidecar and through the Gateway. Both runs must
see what the Gateway API spec says: path, header and exact matches in the spec's precedence,
a redirect, a prefix rewrite, a request header set, load spread over the two sidecars of
api-v1 (registered as endpoints when they connect), a weighted split, 503 for a Service with
no endpoint, 404 for a request no route of a Service with routes matches, a GRPCRoute
choosing by method and header for gRPC calls, a Gateway listener routing by hostname, and a
Gateway TLS listener passing a TLS connection through, by SNI, to a TLSRoute's backend, and
one terminating TLS for a TLSRoute (v1) whose backend gets the plain bytes.
"""

from __future__ import annotations

import collections
import json
import socket
import ssl
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.proxy.helpers import tls_files
from tests.support.grpc_backends import GrpcBackend
from tests.support.http_backends import EchoBackend
from tests.support.mesh import (
    MeshControlPlane,
    backend_of,
    request,
    start_gateway,
    start_sidecar,
)

pytestmark = pytest.mark.conformance

NET = "127.91"
GATEWAY_IP = f"{NET}.9.1"
MESH = f"""
apiVersion: v1
kind: Service
metadata: {{name: front}}
spec: {{ports: [{{name: http, port: 8000, appProtocol: http}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api}}
spec: {{ports: [{{name: http, port: 8080, targetPort: 9080, appProtocol: http}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api-v1}}
spec: {{ports: [{{name: http, port: 8080, targetPort: 9081, appProtocol: http}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api-v2}}
spec: {{ports: [{{name: http, port: 8080, targetPort: 9082, appProtocol: http}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api}}
spec:
  parentRefs: [{{group: "", kind: Service, name: api, port: 8080}}]
  rules:
  - matches:
    - {{path: {{type: PathPrefix, value: /v2}}}}
    - {{headers: [{{name: x-version, value: two}}]}}
    backendRefs: [{{name: api-v2, port: 8080}}]
  - matches: [{{path: {{type: Exact, value: /exact}}}}]
    backendRefs: [{{name: api, port: 8080}}]
  - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
    filters: [{{type: RequestRedirect, requestRedirect: {{hostname: new.example, statusCode: 301,
               path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}}}}}]
  - matches: [{{path: {{type: PathPrefix, value: /rw}}}}]
    filters:
    - type: URLRewrite
      urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-mesh, value: rewritten}}]}}
    backendRefs: [{{name: api-v1, port: 8080}}]
  - matches: [{{path: {{type: PathPrefix, value: /split}}}}]
    backendRefs: [{{name: api-v1, port: 8080, weight: 1}}, {{name: api-v2, port: 8080, weight: 1}}]
  - matches: [{{path: {{type: PathPrefix, value: /}}, method: GET}}]
    backendRefs: [{{name: api-v1, port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: greeter}}
spec: {{ports: [{{name: grpc, port: 9090, targetPort: 9190, appProtocol: grpc}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: greeter-v2}}
spec: {{ports: [{{name: grpc, port: 9090, targetPort: 9191, appProtocol: grpc}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: greeter}}
spec:
  parentRefs: [{{group: "", kind: Service, name: greeter}}]
  rules:
  - matches:
    - {{method: {{service: test.Echo, method: Unary}}, headers: [{{name: x-v, value: two}}]}}
    backendRefs: [{{name: greeter-v2, port: 9090}}]
  - matches: [{{method: {{service: test.Echo}}}}]
    backendRefs: [{{name: greeter, port: 9090}}]
---
apiVersion: v1
kind: Service
metadata: {{name: secure}}
spec: {{ports: [{{name: tls, port: 8443, targetPort: 9443, appProtocol: tls}}]}}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: secure}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [secure.tls.example.com]
  rules: [{{backendRefs: [{{name: secure, port: 8443}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: pointsman
  addresses: [{{type: IPAddress, value: {GATEWAY_IP}}}]
  listeners:
  - {{name: www, port: 8088, protocol: HTTP, hostname: www.example.com}}
  - {{name: other, port: 8088, protocol: HTTP}}
  - name: tls
    port: 8443
    protocol: TLS
    hostname: "*.tls.example.com"
    tls: {{mode: Passthrough}}
  - name: term
    port: 8443
    protocol: TLS
    hostname: "*.term.example.com"
    tls: {{mode: Terminate, certificateRefs: [{{name: term-cert}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {{name: term}}
spec:
  parentRefs: [{{name: edge, sectionName: term}}]
  hostnames: [db.term.example.com]
  rules: [{{backendRefs: [{{name: api-v2, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: www}}
spec:
  parentRefs: [{{name: edge, sectionName: www}}]
  rules: [{{backendRefs: [{{name: api-v2, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: other}}
spec:
  parentRefs: [{{name: edge, sectionName: other}}]
  rules: [{{backendRefs: [{{name: api-v1, port: 8080}}]}}]
"""


def summary(status: int, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
    seen = json.loads(body) if body.startswith(b"{") else {}
    sent = {name: value for name, value in seen.get("headers", [])}
    return (status, backend_of(body).rsplit("-", 1)[0] if backend_of(body) else "",
            headers.get("location", ""), seen.get("path", ""), sent.get("x-mesh", ""))


def observe(front_outbound: str, ca: Path) -> dict[str, Any]:
    via = (front_outbound, 8080)

    def get(path: str, **headers: str) -> tuple[Any, ...]:
        return summary(*request(via, path, host="api", headers=headers))

    seen: dict[str, Any] = {
        "/": get("/"), "/v2/x": get("/v2/x"), "/v2x": get("/v2x"),
        "header": get("/", **{"x-version": "two"}),
        "POST header": summary(*request(via, "/", host="api", method="POST",
                                        headers={"x-version": "two"})),
        "/exact": get("/exact"),
        "/old/a?q=1": get("/old/a?q=1"), "/rw/b": get("/rw/b"),
        "POST /": summary(*request(via, "/", host="api", method="POST")),
        "unknown host": summary(*request(via, "/", host="nobody"))[0],
    }
    replicas = collections.Counter(backend_of(request(via, "/", host="api")[2])
                                   for _ in range(12))
    seen["replicas"] = sorted(replicas)
    split = collections.Counter(backend_of(request(via, "/split", host="api")[2]).rsplit("-", 1)[0]
                                for _ in range(60))
    seen["split"] = sorted(name for name, count in split.items() if count >= 10)
    gateway = (GATEWAY_IP, 8088)
    seen["gateway www"] = summary(*request(gateway, "/g", host="www.example.com"))[:2]
    seen["gateway other"] = summary(*request(gateway, "/g", host="else.example.org"))[:2]
    seen["grpc"] = grpc_calls(front_outbound)
    seen["tls passthrough"] = tls_passthrough(ca)
    seen["tls terminate"] = tls_passthrough(ca, "db.term.example.com")
    return seen


def grpc_calls(outbound: str) -> tuple[str, str]:
    """/test.Echo/Unary with and without the header that picks greeter-v2."""
    options = [("grpc.default_authority", "greeter:9090")]
    with grpc.insecure_channel(f"{outbound}:9090", options=options) as channel:
        unary = channel.unary_unary("/test.Echo/Unary")
        plain = unary(b"hi", timeout=5)
        picked = unary(b"hi", timeout=5, metadata=[("x-v", "two")])
    return plain.decode(), picked.decode()


def tls_passthrough(ca: Path, server_name: str = "secure.tls.example.com") -> tuple[str, str]:
    """A TLS client to the Gateway naming `server_name` gets a certificate that verifies
    (the backend's own through a Passthrough listener, the listener's where it terminates),
    and an HTTP request inside it reaches the application."""
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection((GATEWAY_IP, 8443), timeout=5)
    with context.wrap_socket(raw, server_hostname=server_name) as sock:
        sock.sendall(f"GET /t HTTP/1.1\r\nHost: {server_name}\r\n"
                     "Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b" ")[1].decode(), backend_of(body)


EXPECTED = {
    "/": (200, "api-v1", "", "/", ""),
    "/v2/x": (200, "api-v2", "", "/v2/x", ""),
    "/v2x": (200, "api-v1", "", "/v2x", ""),
    "header": (200, "api-v1", "", "/", ""),  # a method match outranks a header match
    "POST header": (200, "api-v2", "", "/", ""),
    "/exact": (503, "", "", "", ""),  # api has no endpoint (HTTPRouteRule.BackendRefs: 503)
    "/old/a?q=1": (301, "", "http://new.example:8080/new/a?q=1", "", ""),
    "/rw/b": (200, "api-v1", "", "/b", "rewritten"),
    "POST /": (404, "", "", "", ""),  # no rule matches: rejected (GAMMA)
    "unknown host": 404,
    "replicas": ["api-v1-1", "api-v1-2"],
    "split": ["api-v1", "api-v2"],
    "gateway www": (200, "api-v2"),
    "gateway other": (200, "api-v1"),
    "grpc": ("greeter-4:hi", "greeter-v2-5:hi"),
    "tls passthrough": ("200", "secure-6"),
    "tls terminate": ("200", "api-v2-3"),
}


def tls_secret(name: str, certificate: Path, key: Path) -> str:
    data = {"tls.crt": certificate.read_text(), "tls.key": key.read_text()}
    return (f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\n"
            f"type: kubernetes.io/tls\nstringData: {json.dumps(data)}\n")


def grpc_app(name: str, host: str, port: int) -> GrpcBackend:
    return GrpcBackend(name, host=host, port=port).start()


def tls_app(certificate: tuple[Path, Path]) -> Any:
    def start(name: str, host: str, port: int) -> EchoBackend:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*certificate)
        return EchoBackend(name, host=host, port=port, ssl_context=context).start()
    return start


def run_mesh(flavour: str, tmp_path: Path) -> dict[str, Any]:
    certificates = tls_files(tmp_path, ["secure.tls.example.com", "db.term.example.com"])
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH + tls_secret("term-cert", *certificates["db.term.example.com"]))
    with ExitStack() as stack:
        control_plane = MeshControlPlane(mesh)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        front = start_sidecar(stack, flavour, control_plane, "front", 1, NET)
        members = [start_sidecar(stack, flavour, control_plane, "api-v1", 1, NET,
                                 app_port=9081),
                   start_sidecar(stack, flavour, control_plane, "api-v1", 2, NET,
                                 app_port=9081),
                   start_sidecar(stack, flavour, control_plane, "api-v2", 3, NET,
                                 app_port=9082),
                   start_sidecar(stack, flavour, control_plane, "greeter", 4, NET,
                                 app_port=9190, app=grpc_app),
                   start_sidecar(stack, flavour, control_plane, "greeter-v2", 5, NET,
                                 app_port=9191, app=grpc_app),
                   start_sidecar(stack, flavour, control_plane, "secure", 6, NET,
                                 app_port=9443,
                                 app=tls_app(certificates["secure.tls.example.com"]))]
        gateway = start_gateway(stack, flavour, control_plane, "edge")
        for proxy in (front.proxy, gateway, *(member.proxy for member in members)):
            proxy.wait_ready()
        wait_converged(front.outbound_ip, front.proxy)
        return observe(front.outbound_ip, certificates["ca"][0])


def wait_converged(outbound: str, proxy: Any) -> None:
    """Until both api-v1 sidecars are endpoints and the Gateway answers."""
    def ready() -> bool:
        seen = {backend_of(request((outbound, 8080), "/", host="api", timeout=2)[2])
                for _ in range(6)}
        gateway = request((GATEWAY_IP, 8088), "/", host="www.example.com", timeout=2)[0]
        routed = {backend_of(request((outbound, 8080), "/split", host="api", timeout=2)[2])
                  for _ in range(8)}
        return seen == {"api-v1-1", "api-v1-2"} and gateway == 200 and "api-v2-3" in routed
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"mesh did not converge:\n{proxy.output()[-3000:]}")


def test_envoy_sidecars_route_the_mesh_as_the_spec_says(tmp_path: Path) -> None:
    assert run_mesh("envoy", tmp_path) == EXPECTED


def test_pointsman_sidecars_route_the_mesh_like_envoy(tmp_path: Path) -> None:
    assert run_mesh("pointsman", tmp_path) == EXPECTED
