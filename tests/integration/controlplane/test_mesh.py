"""`pointsman controlplane --mesh` with Pointsman sidecars (over delta xDS; the twin test in
tests/conformance/controlplane uses state of the world): a mesh edit re-routes traffic, an
invalid edit is refused (named by file and line) while the last good mesh keeps serving,
and a sidecar that goes away stops being an endpoint of its Service."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from tests.support.mesh import (
    MeshControlPlane,
    backend_of,
    request,
    start_sidecar,
    write_atomically,
)

NET = "127.92"
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
metadata: {name: api-v2}
spec: {ports: [{name: http, port: 8080, targetPort: 9082, appProtocol: http}]}
"""
CANARY = """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: canary}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules:
  - matches: [{path: {value: /beta}}]
    backendRefs: [{name: api-v2, port: 8080}]
  - backendRefs: [{name: api, port: 8080}]
"""


def eventually(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout}s")


def test_mesh_changes_reach_the_sidecars(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(MESH)
    with ExitStack() as stack:
        control_plane = MeshControlPlane(mesh)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        front = start_sidecar(stack, "pointsman", control_plane, "front", 1, NET, delta=True)
        api = [start_sidecar(stack, "pointsman", control_plane, "api", index, NET,
                             app_port=9081, delta=True) for index in (1, 2)]
        beta = start_sidecar(stack, "pointsman", control_plane, "api-v2", 3, NET,
                             app_port=9082, delta=True)
        for member in (front, *api, beta):
            member.proxy.wait_ready()
        via = (front.outbound_ip, 8080)

        def backends(path: str, count: int = 8) -> set[str]:
            return {backend_of(request(via, path, host="api", timeout=2)[2])
                    for _ in range(count)}
        eventually(lambda: backends("/beta") == {"api-1", "api-2"}, "both api sidecars")

        write_atomically(mesh, MESH + CANARY)
        eventually(lambda: backends("/beta/x") == {"api-v2-3"}, "re-routed by the HTTPRoute")
        assert backends("/other") == {"api-1", "api-2"}

        write_atomically(mesh, MESH + CANARY.replace("backendRefs: [{name: api-v2",
                                                     "backendRef: [{name: api-v2"))
        eventually(lambda: "mesh.yaml:" in (control_plane.status()["last_config_error"] or ""),
                   "the bad edit reported")
        error = control_plane.status()["last_config_error"]
        assert "HTTPRoute default/canary" in error and "spec.rules[0].backendRef" in error
        assert backends("/beta/x") == {"api-v2-3"}  # the last good mesh still serves

        assert control_plane.status()["mesh_node_errors"] == {}

        api[1].proxy.stop()
        eventually(lambda: backends("/other", 12) == {"api-1"}, "the stopped sidecar gone")
        statuses = {request(via, "/other", host="api", timeout=2)[0] for _ in range(20)}
        assert statuses == {200}
