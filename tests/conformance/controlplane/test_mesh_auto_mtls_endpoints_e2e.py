"""Automatic mTLS per endpoint, end to end: one Service backed by a sidecar (STRICT: it takes
mTLS only) and by an EndpointSlice address (an application without a sidecar: plaintext only).
A caller's sidecar reaches both through one cluster: mTLS to the endpoint labelled
`tlsMode: istio`, plaintext to the other (the cluster's transport_socket_matches,
controlplane/mesh/compile/mtls.py). With Pointsman sidecars and with Envoy sidecars."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.integration.controlplane.test_mesh import eventually
from tests.support.http_backends import EchoBackend
from tests.support.identity import write_ca
from tests.support.mesh import MeshControlPlane, backend_of, request, start_sidecar

pytestmark = pytest.mark.conformance

MESH = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, targetPort: 9000, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: mixed, labels: {app: mixed}}
spec: {ports: [{name: http, port: 8080, targetPort: 9080, appProtocol: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: mixed-outside, labels: {kubernetes.io/service-name: mixed}}
addressType: IPv4
ports: [{name: http, port: 9080}]
endpoints: [{addresses: [PLAIN_IP]}]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mixed}
spec:
  selector: {matchLabels: {app: mixed}}
  mtls: {mode: STRICT}
"""
NETS = {"pointsman": "127.186", "envoy": "127.185"}


@pytest.mark.parametrize("flavour", ["pointsman", "envoy"])
def test_a_service_with_a_sidecar_and_an_endpoint_slice_address_is_reached_on_both(
        flavour: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp(f"auto-mtls-{flavour}")
    net = NETS[flavour]
    plain_ip = f"{net}.4.1"
    (folder / "mesh.yaml").write_text(MESH.replace("PLAIN_IP", plain_ip))
    _authority, flags = write_ca(folder)
    with ExitStack() as stack:
        stack.enter_context(EchoBackend("outside", host=plain_ip, port=9080))
        control_plane = MeshControlPlane(folder / "mesh.yaml", *flags)
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        web = start_sidecar(stack, flavour, control_plane, "web", 1, net, app_port=9000)
        mixed = start_sidecar(stack, flavour, control_plane, "mixed", 2, net, app_port=9080)
        web.proxy.wait_ready()
        mixed.proxy.wait_ready()
        seen: set[str] = set()

        def reached_both() -> bool:
            try:
                status, _headers, body = request((web.outbound_ip, 8080), host="mixed")
            except OSError:
                return False
            if status == 200:
                seen.add(backend_of(body))
            return seen == {"mixed-2", "outside"}

        eventually(reached_both, "web reaching the sidecar and the outside address",
                   timeout=30)
        # The sidecar endpoint was reached over mTLS: STRICT has no plaintext chain.
        with pytest.raises((OSError, ConnectionError)):
            request((mixed.instance_ip, 8080), host="mixed", timeout=5)
        # Every call succeeds from now on: none goes to an endpoint with the wrong socket.
        for _ in range(10):
            assert request((web.outbound_ip, 8080), host="mixed")[0] == 200
