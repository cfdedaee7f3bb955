"""One mesh, two kinds of sidecar, both started by `pointsman sidecar` (the bootstrap built
from flags): `api` runs real Envoy (`--proxy envoy`), `front` runs Pointsman. Each calls the
other by Service name through its own outbound listener: with the name in Host, and (the
HTTP_PROXY style) with an absolute URL; each request crosses both kinds of sidecar."""

from __future__ import annotations

import http.client
import json
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.http_backends import EchoBackend
from tests.support.mesh import MeshControlPlane, backend_of, request
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get, python_argv

pytestmark = pytest.mark.conformance

NET = "127.182"
MESH = """
apiVersion: v1
kind: Service
metadata: {name: front}
spec: {ports: [{name: http, port: 8000, targetPort: 9000, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, targetPort: 9080, appProtocol: http}]}
"""


def _sidecar(service: str, index: int, proxy: str, control_plane: MeshControlPlane,
             admin_port: int) -> ManagedProcess:
    return ManagedProcess(python_argv(
        "-m", "proxy.deploy", "sidecar", "--service", service, "--proxy", proxy,
        "--server", f"127.0.0.1:{control_plane.port}", "--instance-ip", f"{NET}.1.{index}",
        "--outbound-ip", f"{NET}.2.{index}", "--app-ip", f"{NET}.3.{index}",
        "--admin", f"127.0.0.1:{admin_port}", "--log-level", "info"),
        name=f"sidecar-{proxy}-{service}")


def _absolute(outbound: str, port: int, url: str) -> tuple[int, bytes]:
    """GET with an absolute URL, as an HTTP client configured with HTTP_PROXY sends it."""
    connection = http.client.HTTPConnection(outbound, port, timeout=5)
    try:
        connection.request("GET", url)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_envoy_and_pointsman_sidecars_in_one_mesh(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    with ExitStack() as stack:
        control_plane = stack.enter_context(MeshControlPlane(tmp_path / "mesh.yaml"))
        control_plane.wait_ready()
        stack.enter_context(EchoBackend("front-app", host=f"{NET}.3.1", port=9000))
        stack.enter_context(EchoBackend("api-app", host=f"{NET}.3.2", port=9080))
        admins = {"front": free_port(), "api": free_port()}
        sidecars = {
            "front": stack.enter_context(_sidecar("front", 1, "pointsman", control_plane,
                                                  admins["front"])),
            "api": stack.enter_context(_sidecar("api", 2, "envoy", control_plane,
                                                admins["api"]))}
        for name, sidecar in sidecars.items():
            sidecar.wait_until(lambda port=admins[name]: http_get(
                f"http://127.0.0.1:{port}/ready")[0] == 200, 60, "ready")
        # both registered: each is its Service's endpoint (docs/mesh.md)
        control_plane.wait_until(lambda: _registered(control_plane) >= 2, 30, "registered")
        status, body = _until_200((f"{NET}.2.1", 8080), "/x", "api")
        assert (status, backend_of(body)) == (200, "api-app")
        status, body = _until_200((f"{NET}.2.2", 8000), "/y", "front.default")
        assert (status, backend_of(body)) == (200, "front-app")
        status, body = _absolute(f"{NET}.2.1", 8080, "http://api:8080/abs")
        assert (status, backend_of(body), json.loads(body)["path"]) == (200, "api-app", "/abs")
        status, body = _absolute(f"{NET}.2.2", 8000, "http://front:8000/abs")
        assert (status, backend_of(body)) == (200, "front-app")
        assert "connected to the control plane" in sidecars["front"].output()
        # the api sidecar really is Envoy: /server_info is Envoy's admin, not ours
        status, info = http_get(f"http://127.0.0.1:{admins['api']}/server_info")
        assert status == 200 and json.loads(info)["state"] == "LIVE"


def _until_200(address: tuple[str, int], path: str, host: str) -> tuple[int, bytes]:
    """EDS reaches the calling sidecar a little after the callee registers (the control
    plane debounces pushes): 503 until then."""
    deadline = time.monotonic() + 20
    while True:
        status, _headers, body = request(address, path, host=host)
        if status == 200 or time.monotonic() > deadline:
            return status, body
        time.sleep(0.1)


def _registered(control_plane: MeshControlPlane) -> int:
    return sum(1 for line in control_plane.output().splitlines()
               if "mesh_endpoint_added" in line)
