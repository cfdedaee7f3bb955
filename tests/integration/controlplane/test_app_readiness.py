"""Application readiness over xDS, with real processes: the control plane, a caller's sidecar
and `pointsman run --app-port` whose application listens only after a few seconds. Before the
application listens its sidecar is connected and has ACKed its listeners, yet it is no endpoint:
callers get the answer for a Service without endpoints (503 "no healthy upstream", docs/
troubleshooting.md), never a 503 from a registered sidecar that cannot reach its application;
once the application listens it is an endpoint; when it stops listening it is removed within
the probe's period x failure threshold (docs/mesh.md, "Application readiness")."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

from tests.support.mesh import MeshControlPlane, request, start_sidecar
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, python_argv

NET = "127.188"
API = f"{NET}.1.9"  # the api sidecar's instance_ip
APP_DELAY = 6.0  # seconds before the application listens
PERIOD, FAILURES = 1.0, 2  # --readiness-period-s, --readiness-failure-threshold
MESH = """
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, targetPort: 9080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, appProtocol: http}]}
"""


def _run_api(control_plane: MeshControlPlane, stop_file: Path) -> ManagedProcess:
    return ManagedProcess(python_argv(
        "-m", "proxy.deploy", "run", "--service", "api", "--node-id", "api-1",
        "--server", f"127.0.0.1:{control_plane.port}", "--instance-ip", API,
        "--outbound-ip", f"{NET}.2.9", "--app-ip", f"{NET}.3.9",
        "--admin", f"127.0.0.1:{free_port()}", "--app-port", "9080",
        "--readiness-period-s", str(PERIOD), "--readiness-failure-threshold", str(FAILURES),
        "--", *python_argv("-m", "tests.support.late_app", "api", f"{NET}.3.9", "9080",
                           str(APP_DELAY), str(stop_file))), name="pointsman-run-api")


def _call(caller_outbound: str) -> tuple[int, str]:
    try:
        status, _headers, body = request((caller_outbound, 8080), "/", host="api", timeout=5)
    except OSError as error:
        return 0, repr(error)
    return status, body.decode("latin-1")


def _lds_acked(control_plane: MeshControlPlane, node_id: str) -> bool:
    for node in control_plane.status()["nodes"]:
        if node["id"] == node_id and node["subscriptions"].get("listener", {}).get("acked_version"):
            return True
    return False


def test_an_endpoint_only_while_the_application_is_ready(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    stop_file = tmp_path / "stop-listening"
    no_endpoints = (503, "no healthy upstream")
    with ExitStack() as stack:
        control_plane = stack.enter_context(MeshControlPlane(tmp_path / "mesh.yaml"))
        control_plane.wait_ready()
        caller = start_sidecar(stack, "pointsman", control_plane, "web", 1, NET).outbound_ip
        run = stack.enter_context(_run_api(control_plane, stop_file))
        run.wait_until(lambda: _lds_acked(control_plane, "api-1"), 60, "api sidecar ACKed LDS")
        acked_at = time.monotonic()
        # Registered-but-not-ready would be an endpoint 0.1 s after the ACK: sample the whole
        # time the application is not listening.
        answers = []
        while "late-app api listening" not in run.output():
            answers.append((time.monotonic() - acked_at, _call(caller)))
            time.sleep(0.2)
        assert answers and answers[-1][0] > 2.0, answers  # well past the ACK's registration
        assert {answer for _, answer in answers} == {no_endpoints}, answers
        run.wait_until(lambda: _call(caller)[0] == 200, 20, "api is an endpoint")
        assert "api" in _call(caller)[1]
        stop_file.touch()
        stopped = time.monotonic()
        run.wait_until(lambda: "stopped listening" in run.output(), 10, "app stopped")
        run.wait_until(lambda: _call(caller) == no_endpoints, PERIOD * FAILURES + 8,
                       "api removed")
        took = time.monotonic() - stopped
        # two failed probes a period apart, the first within a period: 2 periods, plus the
        # registration batch (0.1 s), the push and a loaded machine's margin
        assert took < PERIOD * FAILURES + PERIOD + 3.0, took
        assert run.alive()  # the application still runs: the probe, not its exit, removed it
