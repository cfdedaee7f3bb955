"""AuthorizationPolicy on a TCP port end to end: the control plane compiles an
ALLOW-by-principal policy on an opaque TCP Service port into network RBAC in front of the
callee's tcp_proxy; the callers' sidecars originate mTLS with their SVIDs (automatic mTLS),
so the callee's sidecar lets `web` through and closes `intruder`'s connection, and counts
both in `tcp.rbac.*`. The same compiled config, run by Pointsman sidecars and by Envoy
sidecars, behaves the same."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.ca import CertificateAuthority
from tests.integration.controlplane.test_mesh import eventually
from tests.support.identity import client_context, https_get, now, write_ca
from tests.support.mesh import Member, MeshControlPlane, backend_of, request, start_sidecar

pytestmark = pytest.mark.conformance

MESH = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, targetPort: 9000, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: intruder}
spec: {ports: [{name: http, port: 81, targetPort: 9001, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: vault, labels: {app: vault}}
spec: {ports: [{name: db, port: 7000, targetPort: 9070, appProtocol: tcp}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: vault}
spec:
  selector: {matchLabels: {app: vault}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]
"""
NETS = {"pointsman": "127.184", "envoy": "127.185"}
DENIED, ALLOWED = "tcp.rbac.denied", "tcp.rbac.allowed"


@dataclass
class Mesh:
    folder: Path
    authority: CertificateAuthority
    web: Member
    intruder: Member
    vault: Member


@pytest.fixture(scope="module", params=["pointsman", "envoy"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Mesh]:
    flavour = request.param
    folder = tmp_path_factory.mktemp(f"tcp-authz-{flavour}")
    (folder / "mesh.yaml").write_text(MESH)
    authority, flags = write_ca(folder)
    with ExitStack() as stack:
        control_plane = MeshControlPlane(folder / "mesh.yaml", *flags)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        members = [start_sidecar(stack, flavour, control_plane, name, index, NETS[flavour],
                                 app_port=port)
                   for index, (name, port) in enumerate(
                       (("web", 9000), ("intruder", 9001), ("vault", 9070)), start=1)]
        for member in members:
            member.proxy.wait_ready()
        found = Mesh(folder, authority, *members)
        eventually(lambda: _call(found.web) == (200, "vault-3"), "web reaching vault")
        yield found


def _call(caller: Member) -> tuple[int, str]:
    """HTTP carried over the vault's TCP port, through the caller's outbound tcp_proxy."""
    try:
        status, _headers, body = request((caller.outbound_ip, 7000), host="vault")
    except (OSError, http.client.HTTPException):
        return 0, ""  # the connection was closed
    return status, backend_of(body)


def test_allow_by_principal_on_a_tcp_port_refuses_another_identity(mesh: Mesh) -> None:
    stats = mesh.vault.proxy
    denied, allowed = stats.stat(DENIED), stats.stat(ALLOWED)
    assert _call(mesh.intruder) == (0, "")
    assert _call(mesh.web) == (200, "vault-3")
    eventually(lambda: stats.stat(DENIED) == denied + 1, DENIED, timeout=10)
    eventually(lambda: stats.stat(ALLOWED) == allowed + 1, ALLOWED, timeout=10)


def test_a_direct_client_with_another_services_certificate_is_closed(mesh: Mesh) -> None:
    """mTLS straight to the vault's inbound port: authenticated as intruder, then closed by
    the network RBAC on its first byte; web's certificate passes."""
    def direct(who: str) -> int:
        svid = mesh.authority.issue("default", who, now())
        context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
        try:
            return https_get(7000, context, host=mesh.vault.instance_ip)[0]
        except (OSError, http.client.HTTPException):
            return 0
    assert direct("intruder") == 0
    assert direct("web") == 200


def test_plaintext_has_no_principal_so_it_is_closed(mesh: Mesh) -> None:
    """PERMISSIVE takes plaintext, which carries no identity: the ALLOW rule cannot match."""
    with pytest.raises((OSError, http.client.HTTPException)):
        request((mesh.vault.instance_ip, 7000), host="vault", timeout=5)
