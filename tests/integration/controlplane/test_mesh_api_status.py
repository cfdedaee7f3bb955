"""Status through the mesh API with Pointsman sidecars: `pointsman status` shows each sidecar
SYNCED per xDS type; a change a sidecar refuses (its outbound listener cannot bind: the port
is taken on its host) shows as NACKED with the error and the object that changed, the object's
Programmed condition is False (Invalid) and `apply --wait` fails; once the object is fixed the
sidecar is SYNCED and the object Programmed again."""

from __future__ import annotations

import datetime
import json
import socket
from contextlib import ExitStack
from pathlib import Path

from tests.integration.controlplane.test_mesh import MESH, eventually
from tests.support.mesh import start_sidecar
from tests.support.meshapi import ApiControlPlane, pointsman

NET = "127.96"
BLOCKED = """
apiVersion: v1
kind: Service
metadata: {name: blocked}
spec: {ports: [{name: http, port: 9999, appProtocol: http}]}
"""


def status_of(api: str) -> dict[str, object]:
    done = pointsman("status", "-o", "json", server=api)
    assert done.returncode in (0, 1), done.stderr
    return dict(json.loads(done.stdout))


def types_of(data: dict[str, object], node: str) -> dict[str, dict[str, object]]:
    proxies = [item for item in data.get("proxies", []) if item["nodeId"] == node]  # type: ignore
    return {item["type"]: item for item in proxies[0]["types"]} if proxies else {}


def programmed(api: str, kind: str, name: str) -> dict[str, object]:
    got = json.loads(pointsman("get", kind, name, "-o", "json", server=api).stdout)
    return next(item for item in got["status"]["conditions"] if item["type"] == "Programmed")


def test_status_synced_then_nacked_then_fixed(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    (tmp_path / "blocked.yaml").write_text(BLOCKED)
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        api = control_plane.api
        assert pointsman("apply", "-f", str(tmp_path / "mesh.yaml"), server=api).returncode == 0
        front = start_sidecar(stack, "pointsman", control_plane, "front", 1, NET)  # type: ignore
        front.proxy.wait_ready()

        def synced() -> bool:
            states = {item["state"] for item in types_of(status_of(api), "front-1").values()}
            return states == {"SYNCED"}
        eventually(synced, "front-1 SYNCED")
        table = pointsman("status", server=api)
        assert table.returncode == 0
        assert "front-1" in table.stdout and "Service default/front" in table.stdout
        # The store's CA issues SVIDs: mTLS per Service (default PERMISSIVE) and identities.
        assert "MTLS" in table.stdout and "PERMISSIVE" in table.stdout, table.stdout
        proxy = next(item for item in status_of(api)["proxies"] if item["nodeId"] == "front-1")
        assert (proxy["identity"], proxy["mtls"]) == (
            "spiffe://cluster.local/ns/default/sa/front", "PERMISSIVE")
        one = pointsman("status", "front-1", server=api).stdout
        assert "front-1: identity spiffe://cluster.local/ns/default/sa/front, certificate " \
               "valid until " in one, one
        # The SVID's validity (default lifetime 24 h, renewed at half life, controlplane/ca).
        until = datetime.datetime.fromisoformat(proxy["certificateNotAfter"])
        renew = datetime.datetime.fromisoformat(proxy["certificateRenewAt"])
        left = until - datetime.datetime.now(datetime.UTC)
        assert datetime.timedelta(hours=23) < left <= datetime.timedelta(hours=24), until
        # half way from issuance; the certificate's notAfter is in whole seconds (X.509)
        assert abs(until - renew - datetime.timedelta(hours=12)) <= datetime.timedelta(
            seconds=1), (until, renew)
        assert programmed(api, "svc", "api")["status"] == "True"

        taken = socket.socket()
        stack.callback(taken.close)
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((front.outbound_ip, 9999))
        taken.listen()
        waited = pointsman("apply", "-f", str(tmp_path / "blocked.yaml"), "--wait",
                           "--timeout", "60", server=api)
        assert waited.returncode == 1, waited.stderr
        assert "Service default/blocked is not programmed: front-1 NACKed LDS" in waited.stderr
        lds = types_of(status_of(api), "front-1")["LDS"]
        assert lds["state"] == "NACKED" and "9999" in str(lds["error"])
        assert {"kind": "Service", "namespace": "default", "name": "blocked"} in lds["suspects"]
        table = pointsman("status", server=api)
        assert table.returncode == 1
        assert "front-1: LDS NACKED for" in table.stdout
        assert "changed by: Service default/blocked" in table.stdout
        condition = programmed(api, "svc", "blocked")
        assert (condition["status"], condition["reason"]) == ("False", "Invalid")
        assert programmed(api, "svc", "api")["status"] == "True"  # not what front refused

        (tmp_path / "blocked.yaml").write_text(BLOCKED.replace("9999", "9998"))
        fixed = pointsman("apply", "-f", str(tmp_path / "blocked.yaml"), "--wait", server=api)
        assert fixed.returncode == 0, fixed.stderr
        eventually(synced, "front-1 SYNCED again")
        assert programmed(api, "svc", "blocked")["status"] == "True"
