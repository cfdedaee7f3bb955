"""Mesh features compiled to request_mirror_policies, envoy.filters.http.cors and
envoy.filters.http.fault (with per-route typed_per_filter_config), the same with Envoy
sidecars and with Pointsman sidecars: RequestMirror sends a copy to the mirror backend, the
CORS filter answers a preflight, a BackendTrafficPolicy's faultInjection aborts requests on a
route (per-route config at the caller) and on a Service (at the Service's sidecars)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.mesh import MeshControlPlane, backend_of, request, start_sidecar

pytestmark = pytest.mark.conformance

NET = "127.93"
MESH = """
apiVersion: v1
kind: Service
metadata: {name: front}
spec: {ports: [{name: http, port: 8000, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, targetPort: 9081, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: shadow}
spec: {ports: [{name: http, port: 8080, targetPort: 9082, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: broken}
spec: {ports: [{name: http, port: 8080, targetPort: 9083, appProtocol: http}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules:
  - matches: [{path: {value: /mirror}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: shadow, port: 8080}}}]
    backendRefs: [{name: api, port: 8080}]
  - matches: [{path: {value: /cors}}]
    filters:
    - type: CORS
      cors: {allowOrigins: ["https://app.example.com"], allowMethods: [GET, PUT]}
    backendRefs: [{name: api, port: 8080}]
  - name: faulty
    matches: [{path: {value: /faulty}}]
    backendRefs: [{name: api, port: 8080}]
  - backendRefs: [{name: api, port: 8080}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: faulty-rule}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: api,
                sectionName: faulty}]
  faultInjection: {abort: {httpStatus: 418}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: broken-service}
spec:
  targetRefs: [{group: "", kind: Service, name: broken}]
  faultInjection: {abort: {httpStatus: 503}}
"""


@pytest.mark.parametrize("flavour", ["envoy", "pointsman"])
def test_sidecars_mirror_answer_cors_and_inject_faults(flavour: str, tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    with ExitStack() as stack:
        control_plane = MeshControlPlane(mesh)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        front = start_sidecar(stack, flavour, control_plane, "front", 1, NET)
        api = start_sidecar(stack, flavour, control_plane, "api", 2, NET, app_port=9081)
        shadow = start_sidecar(stack, flavour, control_plane, "shadow", 3, NET, app_port=9082)
        broken = start_sidecar(stack, flavour, control_plane, "broken", 4, NET,
                               app_port=9083)
        for member in (front, api, shadow, broken):
            member.proxy.wait_ready()
        via = (front.outbound_ip, 8080)
        deadline = time.monotonic() + 30
        while backend_of(request(via, "/", host="api", timeout=2)[2]) != "api-2":
            assert time.monotonic() < deadline, front.proxy.output()[-3000:]
            time.sleep(0.2)

        # The shadow Service's endpoint may reach the sidecar after api's (registrations are
        # pushed in debounced batches): mirror until one copy arrives.
        assert shadow.app is not None
        deadline = time.monotonic() + 30
        while True:
            status, _, body = request(via, "/mirror/x", host="api")
            assert (status, backend_of(body)) == (200, "api-2")
            if shadow.app.seen:
                break
            assert time.monotonic() < deadline, "the mirror got nothing"
            time.sleep(0.3)
        assert shadow.app.seen[0]["path"] == "/mirror/x"
        assert shadow.app.seen[0]["authority"].startswith("api")  # Envoy adds -shadow

        status, headers, _ = request(via, "/cors", host="api", method="OPTIONS", headers={
            "origin": "https://app.example.com", "access-control-request-method": "PUT"})
        assert status == 200
        assert headers["access-control-allow-origin"] == "https://app.example.com"
        assert headers["access-control-allow-methods"] == "GET,PUT"
        other = request(via, "/cors", host="api", method="OPTIONS", headers={
            "origin": "https://evil.example", "access-control-request-method": "PUT"})[1]
        assert "access-control-allow-origin" not in other

        assert request(via, "/faulty", host="api")[0] == 418
        assert request(via, "/other", host="api")[0] == 200
        assert request(via, "/", host="broken")[0] == 503  # aborted by broken's own sidecar
        assert broken.app is not None and broken.app.total == 0
