"""The same mesh with Envoy sidecars and with Pointsman sidecars: the same routing.

One control plane (`--mesh`) compiles the mesh below; each run starts every sidecar and the
Gateway's proxy as one flavour (real Envoy 1.40, then ours) from the same bootstrap, and the
same requests are sent through the caller's sidecar and through the Gateway. Both runs must
see what the Gateway API spec says: path, header and exact matches in the spec's precedence,
a redirect, a prefix rewrite, a request header set, load spread over the two sidecars of
api-v1 (registered as endpoints when they connect), a weighted split, 503 for a Service with
no endpoint, 404 for a request no route of a Service with routes matches, and a Gateway
listener routing by hostname.
"""

from __future__ import annotations

import collections
import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

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
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: pointsman
  addresses: [{{type: IPAddress, value: {GATEWAY_IP}}}]
  listeners:
  - {{name: www, port: 8088, protocol: HTTP, hostname: www.example.com}}
  - {{name: other, port: 8088, protocol: HTTP}}
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


def observe(front_outbound: str) -> dict[str, Any]:
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
    return seen


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
}


def run_mesh(flavour: str, tmp_path: Path) -> dict[str, Any]:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
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
                                 app_port=9082)]
        gateway = start_gateway(stack, flavour, control_plane, "edge")
        for proxy in (front.proxy, gateway, *(member.proxy for member in members)):
            proxy.wait_ready()
        wait_converged(front.outbound_ip, front.proxy)
        return observe(front.outbound_ip)


def wait_converged(outbound: str, proxy: Any) -> None:
    """Until both api-v1 sidecars are endpoints and the Gateway answers."""
    def ready() -> bool:
        seen = {backend_of(request((outbound, 8080), "/", host="api", timeout=2)[2])
                for _ in range(6)}
        gateway = request((GATEWAY_IP, 8088), "/", host="www.example.com", timeout=2)[0]
        return seen == {"api-v1-1", "api-v1-2"} and gateway == 200
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
