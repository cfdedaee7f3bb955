"""`pointsman apply` of the conformance suite's Gateways that fail on purpose, through the mesh
API: they are stored (not refused), and `pointsman get KIND NAME -n NS -o json` shows the status
the suite reads (GatewayListenerUnsupportedProtocol, GatewayInvalidTLSConfiguration,
BackendTLSPolicyInvalidKind)."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

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
