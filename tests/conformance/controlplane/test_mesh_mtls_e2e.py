"""Automatic mTLS and Istio's security policies end to end: the control plane's CA issues
SVIDs over SDS, a caller's sidecar reaches a callee's sidecar over mTLS, a STRICT port
refuses plaintext (no_filter_chain_match), a PERMISSIVE port serves plaintext and mTLS, and
an ALLOW-by-principal AuthorizationPolicy refuses another service with 403 and counts it in
the callee's `rbac` stats; a Gateway's proxy calls sidecars over mTLS with its own identity.
The same with Pointsman sidecars, with Envoy sidecars, and with Envoy callers (and Gateway)
of Pointsman callees."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from controlplane.ca import CertificateAuthority
from tests.integration.controlplane.test_mesh import eventually
from tests.support.identity import (
    client_context,
    handshake_refused,
    https_get,
    now,
    write_ca,
)
from tests.support.mesh import (
    Member,
    MeshControlPlane,
    backend_of,
    request,
    start_gateway,
    start_sidecar,
)

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
metadata: {name: open}
spec: {ports: [{name: http, port: 8080, targetPort: 9080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: locked, labels: {app: locked}}
spec: {ports: [{name: http, port: 8090, targetPort: 9090, appProtocol: http}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: locked}
spec:
  selector: {matchLabels: {app: locked}}
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: locked}
spec:
  selector: {matchLabels: {app: locked}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pointsman
  addresses: [{type: IPAddress, value: GATEWAY_IP}]
  listeners: [{name: www, port: 8000, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: www}
spec:
  parentRefs: [{name: edge}]
  rules:
  - matches: [{path: {value: /locked}}]
    backendRefs: [{name: locked, port: 8090}]
  - backendRefs: [{name: open, port: 8080}]
"""
NETS = {"pointsman": "127.188", "envoy": "127.189", "mixed": "127.187"}
# Who runs each sidecar: "mixed" has Envoy callers and Pointsman callees.
FLAVOURS = {"pointsman": ("pointsman",) * 4, "envoy": ("envoy",) * 4,
            "mixed": ("envoy", "envoy", "pointsman", "pointsman")}


@dataclass
class Mesh:
    folder: Path
    authority: CertificateAuthority
    web: Member
    intruder: Member
    open: Member
    locked: Member
    gateway_ip: str


@pytest.fixture(scope="module", params=["pointsman", "envoy", "mixed"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Mesh]:
    flavour = request.param
    folder = tmp_path_factory.mktemp(f"mtls-{flavour}")
    net = NETS[flavour]
    (folder / "mesh.yaml").write_text(MESH.replace("GATEWAY_IP", f"{net}.9.1"))
    authority, flags = write_ca(folder)
    with ExitStack() as stack:
        control_plane = MeshControlPlane(folder / "mesh.yaml", *flags)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        members = [start_sidecar(stack, kind, control_plane, name, index, net,
                                 app_port=port)
                   for index, (kind, (name, port)) in enumerate(zip(FLAVOURS[flavour], (
                       ("web", 9000), ("intruder", 9001), ("open", 9080), ("locked", 9090)),
                       strict=True), start=1)]
        gateway = start_gateway(stack, FLAVOURS[flavour][0], control_plane, "edge")
        for proxy in [*(member.proxy for member in members), gateway]:
            proxy.wait_ready()
        found = Mesh(folder, authority, *members, f"{net}.9.1")
        eventually(lambda: _call(found.web, "open", 8080)[0] == 200, "web reaching open")
        eventually(lambda: _call(found.web, "locked", 8090)[0] == 200, "web reaching locked")
        yield found


def _call(caller: Member, service: str, port: int) -> tuple[int, str]:
    try:
        status, _headers, body = request((caller.outbound_ip, port), host=service)
    except OSError:
        return 0, ""
    return status, backend_of(body)


def test_a_caller_reaches_a_strict_service_over_mtls(mesh: Mesh) -> None:
    assert _call(mesh.web, "locked", 8090) == (200, "locked-4")
    assert _call(mesh.web, "open", 8080) == (200, "open-3")


def test_strict_refuses_plaintext(mesh: Mesh) -> None:
    with pytest.raises((OSError, ConnectionError)):
        request((mesh.locked.instance_ip, 8090), host="locked", timeout=5)
    stat = f"listener.{mesh.locked.instance_ip}_8090.no_filter_chain_match"
    eventually(lambda: mesh.locked.proxy.stat(stat) >= 1, stat, timeout=10)


def test_permissive_serves_plaintext_and_mtls_on_one_port(mesh: Mesh) -> None:
    status, _headers, body = request((mesh.open.instance_ip, 8080), host="open")
    assert (status, backend_of(body)) == (200, "open-3")
    svid = mesh.authority.issue("default", "web", now())
    context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
    status, body = https_get(8080, context, host=mesh.open.instance_ip)
    assert (status, backend_of(body)) == (200, "open-3")


@pytest.mark.parametrize("alpn", [None, ["http/1.1"], ["h2"], ["istio-peer-exchange", "h2"]])
def test_tls_without_a_client_certificate_cannot_downgrade_either_mode(mesh: Mesh,
                                                                       alpn: list[str] | None
                                                                       ) -> None:
    """A TLS client that trusts the mesh but presents no certificate, whatever ALPN it offers,
    gets no answer from a STRICT port nor from a PERMISSIVE one: the chains are told apart
    by transport protocol only (TLS or not), and the TLS chain requires a client certificate,
    so PERMISSIVE's plaintext chain is no way around it."""
    context = client_context(mesh.authority.trust_bundle, None, mesh.folder)
    if alpn is not None:
        context.set_alpn_protocols(alpn)
    assert handshake_refused(8090, context, host=mesh.locked.instance_ip)
    assert handshake_refused(8080, context, host=mesh.open.instance_ip)


def test_allow_by_principal_refuses_another_service(mesh: Mesh) -> None:
    denied = "http.inbound_8090.rbac.denied"
    before = mesh.locked.proxy.stat(denied)
    assert _call(mesh.intruder, "locked", 8090)[0] == 403
    assert _call(mesh.web, "locked", 8090) == (200, "locked-4")
    eventually(lambda: mesh.locked.proxy.stat(denied) == before + 1, denied, timeout=10)
    assert mesh.locked.proxy.stat("http.inbound_8090.rbac.allowed") >= 1


def test_a_valid_certificate_of_another_service_cannot_pass_for_it(mesh: Mesh) -> None:
    """A direct mTLS client with intruder's SVID is authenticated, then refused by RBAC."""
    svid = mesh.authority.issue("default", "intruder", now())
    context = client_context(mesh.authority.trust_bundle, svid, mesh.folder)
    assert https_get(8090, context, host=mesh.locked.instance_ip)[0] == 403


def test_a_gateway_calls_sidecars_over_mtls_with_its_own_identity(mesh: Mesh) -> None:
    """The Gateway's proxy presents its own SVID (spiffe://.../sa/edge): a STRICT port takes
    it, and the ALLOW-by-principal policy (web only) refuses it."""
    def through_gateway(path: str) -> tuple[int, str]:
        status, _headers, body = request((mesh.gateway_ip, 8000), path, host="www.test")
        return status, backend_of(body)
    eventually(lambda: through_gateway("/")[0] == 200, "the Gateway serving")
    assert through_gateway("/") == (200, "open-3")
    assert through_gateway("/locked")[0] == 403
