"""Istio's security kinds through the mesh API, with a Pointsman sidecar: `pointsman apply`
stores a PeerAuthentication and an AuthorizationPolicy (short names pa, ap), `get` lists
them with their conditions (Programmed once the sidecar ACKed), `describe service` shows the
sidecars' SPIFFE ID, the port's mode and the policies, `status` the MTLS column; a bad field
is refused naming it and changes nothing."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

from tests.integration.controlplane.test_mesh import eventually
from tests.integration.controlplane.test_mesh_api_status import programmed, status_of
from tests.support.mesh import start_sidecar
from tests.support.meshapi import ApiControlPlane, pointsman

NET = "127.186"
MESH = """
apiVersion: v1
kind: Service
metadata: {name: api, labels: {app: api}}
spec: {ports: [{name: http, port: 8080, targetPort: 9080, appProtocol: http}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  rules: [{from: [{source: {namespaces: [default]}}]}]
"""
BAD = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit}
spec: {action: AUDIT}
"""


def test_istio_kinds_through_the_api(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    (tmp_path / "bad.yaml").write_text(BAD)
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        api = control_plane.api
        assert pointsman("apply", "-f", str(tmp_path / "mesh.yaml"), server=api).returncode == 0
        sidecar = start_sidecar(stack, "pointsman", control_plane, "api", 1,  # type: ignore
                                NET, app_port=9080)
        sidecar.proxy.wait_ready()
        eventually(lambda: programmed(api, "pa", "api")["status"] == "True", "pa Programmed")
        eventually(lambda: programmed(api, "ap", "api")["status"] == "True", "ap Programmed")
        listed = pointsman("get", "peerauthentications", server=api)
        assert listed.stdout.splitlines()[1].split()[0] == "api", listed.stdout

        described = json.loads(pointsman("describe", "svc", "api", "-o", "json",
                                         server=api).stdout)
        assert described["identity"] == "spiffe://cluster.local/ns/default/sa/api"
        [port] = described["ports"]
        assert (port["mtlsMode"], port["mtlsSource"], port["callersUseMtls"]) == (
            "STRICT", "PeerAuthentication default/api", True)
        kinds = {item["policy"]["kind"] for item in described["policies"]}
        assert kinds == {"PeerAuthentication", "AuthorizationPolicy"}
        proxy = next(item for item in status_of(api)["proxies"]  # type: ignore[attr-defined]
                     if item["nodeId"] == "api-1")
        assert proxy["mtls"] == "STRICT"

        refused = pointsman("apply", "-f", str(tmp_path / "bad.yaml"), server=api)
        assert refused.returncode == 1
        assert "AuthorizationPolicy default/audit: spec.action: error: AUDIT is not " \
               "supported" in refused.stderr, refused.stderr
        missing = pointsman("get", "ap", "audit", server=api)
        assert missing.returncode == 1
