"""ListenerSet end to end: a Gateway's proxy (real Envoy 1.40, then ours) serves the listeners
of the ListenerSets its allowedListeners admits (an HTTP listener on the Gateway's port, an
HTTPS one on a port of its own), routes attached through a ListenerSet parentRef answer on
them, a route attached to the Gateway does not, and a set the Gateway does not admit is not
served (listenerset-http-routing.go, listenerset-default-not-allowed.go).
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

NET = "127.94"
GATEWAY_IP = f"{NET}.9.1"
BACKEND_IP = f"{NET}.3.1"


def mesh_yaml(certificate: tuple[Path, Path]) -> str:
    chain, key = ("".join(f"    {line}\n" for line in path.read_text().splitlines())
                  for path in certificate)
    return f"""apiVersion: v1
kind: Service
metadata: {{name: app}}
spec: {{ports: [{{name: http, port: 8080, appProtocol: http}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
endpoints: [{{addresses: [{BACKEND_IP}]}}]
ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: ls-cert}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{chain}  tls.key: |
{key}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: pointsman
  addresses: [{{value: {GATEWAY_IP}}}]
  allowedListeners: {{namespaces: {{from: Same}}}}
  listeners: [{{name: own, port: 8088, protocol: HTTP, hostname: gw.example.com}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: extra}}
spec:
  parentRef: {{name: edge}}
  listeners:
  - {{name: http, port: 8088, protocol: HTTP, hostname: ls.example.com}}
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: ls.example.com
    tls: {{certificateRefs: [{{name: ls-cert}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {{name: elsewhere, namespace: other}}
spec:
  parentRef: {{name: edge, namespace: default}}
  listeners: [{{name: http, port: 8089, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: via-set}}
spec:
  parentRefs: [{{kind: ListenerSet, name: extra}}]
  rules: [{{matches: [{{path: {{type: PathPrefix, value: /set}}}}],
            backendRefs: [{{name: app, port: 8080}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: via-gateway}}
spec:
  parentRefs: [{{name: edge}}]
  rules: [{{matches: [{{path: {{type: PathPrefix, value: /gw}}}}],
            backendRefs: [{{name: app, port: 8080}}]}}]
"""


def _https(ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    raw = socket.create_connection((GATEWAY_IP, 8443), timeout=5)
    with context.wrap_socket(raw, server_hostname="ls.example.com") as sock:
        sock.sendall(b"GET /set HTTP/1.1\r\nHost: ls.example.com\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b" ")[1].decode()


def _get(path: str, host: str, port: int = 8088) -> tuple[int, str]:
    try:
        status, _headers, body = request((GATEWAY_IP, port), path, host=host, timeout=3)
    except OSError:
        return (0, "")
    return status, backend_of(body)


def run(flavour: str, tmp_path: Path) -> dict[str, Any]:
    certificates = tls_files(tmp_path, ["ls.example.com"])
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(mesh_yaml(certificates["ls.example.com"]))
    with ExitStack() as stack:
        backend = EchoBackend("app", host=BACKEND_IP, port=9080).start()
        stack.callback(backend.stop)
        control_plane = MeshControlPlane(mesh)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        proxy = start_gateway(stack, flavour, control_plane, "edge")
        proxy.wait_ready()
        deadline = time.monotonic() + 45
        while _get("/set", "ls.example.com")[0] != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(proxy.output()[-3000:])
            time.sleep(0.3)
        return {"set http": _get("/set", "ls.example.com"),
                "set https": _https(certificates["ca"][0]),
                "gateway route on the set's listener": _get("/gw", "ls.example.com")[0],
                "gateway route": _get("/gw", "gw.example.com"),
                "set route on the gateway's listener": _get("/set", "gw.example.com")[0],
                "not admitted": _get("/", "any", 8089)[0]}


EXPECTED = {"set http": (200, "app"), "set https": "200",
            "gateway route on the set's listener": 404, "gateway route": (200, "app"),
            "set route on the gateway's listener": 404, "not admitted": 0}


def test_envoy_gateway_serves_listener_sets(tmp_path: Path) -> None:
    assert run("envoy", tmp_path) == EXPECTED


def test_pointsman_gateway_serves_listener_sets_like_envoy(tmp_path: Path) -> None:
    assert run("pointsman", tmp_path) == EXPECTED
