"""`pointsman apply` of the conformance suite's Gateways that fail on purpose, through the mesh
API: they are stored (not refused), and `pointsman get KIND NAME -n NS -o json` shows the status
the suite reads (GatewayListenerUnsupportedProtocol, GatewayInvalidTLSConfiguration,
BackendTLSPolicyInvalidKind), and a Gateway whose proxy cannot bind its address
(GatewayStaticAddresses)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.integration.controlplane.test_mesh import eventually
from tests.support.mesh import start_gateway
from tests.support.meshapi import ApiControlPlane, pointsman

TESTS = Path(__file__).parents[2] / "conformance/gateway_api/upstream/conformance/tests"
NS = "gateway-conformance-infra"


def get(api: str, kind: str, name: str) -> dict[str, Any]:
    done = pointsman("get", kind, name, "-n", NS, "-o", "json", server=api)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["status"])


def reasons(conditions: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    return {item["type"]: (item["status"], item["reason"]) for item in conditions}


def test_failing_gateways_are_stored_with_their_status(tmp_path: Path) -> None:
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        api = control_plane.api
        for name in ("gateway-invalid-listeners-unsupported-protocol.yaml",
                     "gateway-invalid-tls-configuration.yaml",
                     "backendtlspolicy-invalid-kind.yaml"):
            done = pointsman("apply", "-f", str(TESTS / name), server=api)
            assert done.returncode == 0, (name, done.stderr)
        only = get(api, "gateway", "gateway-only-unsupported-protocols")
        assert reasons(only["conditions"])["Accepted"] == ("False", "ListenersNotValid")
        [listener] = only["listeners"]
        assert listener["supportedKinds"] == []
        assert reasons(listener["conditions"])["Accepted"] == ("False", "UnsupportedProtocol")
        some = get(api, "gateway", "gateway-supported-and-unsupported-protocols")
        assert reasons(some["conditions"])["Accepted"] == ("True", "ListenersNotValid")
        malformed = get(api, "gateway", "gateway-certificate-malformed-secret")
        assert reasons(malformed["listeners"][0]["conditions"])["ResolvedRefs"] == (
            "False", "InvalidCertificateRef")
        assert reasons(malformed["conditions"])["ResolvedRefs"] == (
            "False", "InvalidCertificateRef")
        policy = get(api, "backendtlspolicy", "invalid-kind")
        assert reasons(policy["conditions"])["Accepted"] == ("False", "NoValidCACertificate")
        assert reasons(policy["conditions"])["ResolvedRefs"] == ("False", "InvalidKind")


GATEWAY = """apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pointsman
  addresses: [{value: ADDRESS}]
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"""


def test_an_address_the_proxy_cannot_bind_is_address_not_usable(tmp_path: Path) -> None:
    """GatewayStaticAddresses: a Gateway whose proxy cannot bind its address (not one of the
    host's: EADDRNOTAVAIL) is Accepted but Programmed=False/AddressNotUsable; with a usable
    address it is Programmed and lists it in status.addresses."""
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        api = control_plane.api
        (tmp_path / "gw.yaml").write_text(GATEWAY.replace("ADDRESS", "192.0.2.1"))
        assert pointsman("apply", "-f", str(tmp_path / "gw.yaml"), server=api).returncode == 0
        proxy = start_gateway(stack, "pointsman", control_plane, "edge")  # type: ignore[arg-type]
        proxy.wait_ready()

        def status(reason: str) -> bool:
            found = get_default(api)
            return reasons(found["conditions"]).get("Programmed", ("", ""))[1] == reason
        eventually(lambda: status("AddressNotUsable"), "Programmed=False/AddressNotUsable")
        assert reasons(get_default(api)["conditions"])["Accepted"] == ("True", "Accepted")
        (tmp_path / "gw.yaml").write_text(GATEWAY.replace("ADDRESS", "127.97.9.1"))
        assert pointsman("apply", "-f", str(tmp_path / "gw.yaml"), server=api).returncode == 0
        eventually(lambda: status("Programmed"), "Programmed")
        assert get_default(api)["addresses"] == [{"type": "IPAddress", "value": "127.97.9.1"}]


def get_default(api: str) -> dict[str, Any]:
    done = pointsman("get", "gateway", "edge", "-o", "json", server=api)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["status"])
