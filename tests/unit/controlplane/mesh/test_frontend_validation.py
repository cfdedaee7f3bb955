"""Gateway spec.tls.frontend: client certificate validation on HTTPS listeners, default and per
port, on the conformance suite's manifests (GatewayFrontendClientCertificateValidation,
GatewayInvalidFrontendClientCertificateValidation,
GatewayFrontendInvalidDefaultClientCertificateValidation,
GatewayFrontendClientCertificateValidationInsecureFallback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controlplane.mesh import load_objects, read_objects, resolve, status
from controlplane.mesh.resolve import Mesh
from controlplane.resources import LISTENER
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, gateway
from tests.unit.controlplane.mesh.test_backend_tls import CA_CONFIG_MAP, CA_PEM, FRONTEND, NS

CONFORMANCE = Path(__file__).parents[4] / "tests/conformance/gateway_api/upstream/conformance"
# The suite's programmatic setup makes these CA ConfigMaps (gateway_steps.SUITE_SETUP).
CAS = "".join(CA_CONFIG_MAP.replace("tls-checks-ca-certificate", name) for name in (
    "tls-validity-checks-ca-certificate", "tls-validity-checks-per-port-ca-certificate"))


def mesh_for(manifest: str) -> Mesh:
    objects, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    objects += load_objects((CONFORMANCE / "tests" / manifest).read_text(), manifest)
    return resolve(objects + load_objects(CAS + FRONTEND))


def listeners(mesh: Mesh, name: str) -> dict[str, dict[str, tuple[str, str]]]:
    found = mesh.get("Gateway", NS, name)
    assert found is not None
    return {item["name"]: {cond["type"]: (cond["status"], cond["reason"])
                           for cond in item["conditions"]}
            for item in status(mesh, found)["listeners"]}


def tls_of(mesh: Mesh, name: str, port: int) -> list[dict[str, Any]]:
    listener = as_dict(compiled(mesh, gateway(name, NS)), LISTENER.type_url, f"gateway|{port}")
    return [chain["transport_socket"]["typed_config"] for chain in listener["filter_chains"]]


def test_https_listeners_require_a_client_certificate_from_the_ca() -> None:
    mesh = mesh_for("gateway-with-clientcertificate-validation.yaml")
    found = listeners(mesh, "client-validation-default")
    assert found["https"]["Accepted"] == ("True", "Accepted")
    assert found["https"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    for port in (443, 8443):  # the default, and the per-port configuration
        [context] = tls_of(mesh, "client-validation-default", port)
        assert context["require_client_certificate"] is True
        assert context["common_tls_context"]["validation_context"]["trusted_ca"][
            "inline_string"] == CA_PEM


def test_invalid_ca_references_are_reported_per_listener() -> None:
    mesh = mesh_for("gateway-with-invalid-clientcertificate-validation.yaml")
    found = listeners(mesh, "gateway-with-invalid-client-cert-validation")
    assert found["https"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert found["https"]["Accepted"] == ("True", "Accepted")
    assert found["https-unresolved"]["ResolvedRefs"] == ("False", "InvalidCACertificateRef")
    assert found["https-unresolved"]["Accepted"] == ("False", "NoValidCACertificate")
    assert found["https-invalid-kind"]["ResolvedRefs"] == ("False", "InvalidCACertificateKind")
    assert found["https-invalid-kind"]["Accepted"] == ("False", "NoValidCACertificate")
    others = [name for name in found if name not in (
        "https", "https-unresolved", "https-invalid-kind")]
    assert others
    for name in others:  # the ConfigMap of another namespace, without a ReferenceGrant
        assert found[name]["ResolvedRefs"] == ("False", "RefNotPermitted"), name


def test_an_invalid_default_leaves_http_listeners_alone() -> None:
    mesh = mesh_for("gateway-invalid-default-frontend-client-certificate-validation.yaml")
    found = listeners(mesh, "invalid-default-client-validation-config")
    assert found["http"]["Accepted"] == ("True", "Accepted")
    assert found["http"]["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert found["https"]["Accepted"] == ("False", "NoValidCACertificate")
    assert found["https"]["ResolvedRefs"] == ("False", "InvalidCACertificateRef")
    resources = compiled(mesh, gateway("invalid-default-client-validation-config", NS))
    assert sorted(resources.resources[LISTENER.type_url]) == ["gateway|80"]


def test_insecure_fallback_is_reported_and_asks_for_no_certificate() -> None:
    mesh = mesh_for("gateway-with-clientcertificate-validation-insecure-fallback.yaml")
    found = mesh.get("Gateway", NS, "client-validation-insecure-fallback")
    assert found is not None
    conditions = {item["type"]: (item["status"], item["reason"])
                  for item in status(mesh, found)["conditions"]}
    assert conditions["InsecureFrontendValidationMode"] == ("True", "ConfigurationChanged")
    [context] = tls_of(mesh, "client-validation-insecure-fallback", 443)
    assert "require_client_certificate" not in context
