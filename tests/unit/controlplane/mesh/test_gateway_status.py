"""Gateways the conformance suite applies and expects *stored* with a negative condition
(GatewayListenerUnsupportedProtocol, GatewayInvalidTLSConfiguration,
GatewayInvalidTLSBackendConfiguration, GatewayStaticAddresses, GatewayOptionalAddressValue,
GatewayInfrastructure, GatewayInvalidParametersRef): loaded from the suite's own manifests,
their status as the suite reads it, and what the compiler serves of them. What the API server
itself refuses (the CRD's rules) is still refused, by field path."""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.ca import CertificateAuthority
from controlplane.mesh import MeshError, load_objects, resolve, status
from controlplane.mesh.resolve import Mesh
from controlplane.resources import LISTENER
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, gateway

UPSTREAM = Path(__file__).parents[4] / "tests/conformance/gateway_api/upstream/conformance/tests"
NS = "gateway-conformance-infra"
_AUTHORITY = CertificateAuthority.create_root(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# The suite's programmatic setup makes this certificate (gateway_steps.SUITE_SETUP).
GOOD_SECRET = f"""---
apiVersion: v1
kind: Secret
metadata: {{name: tls-validity-checks-certificate, namespace: {NS}}}
type: kubernetes.io/tls
data: {{tls.crt: {_b64(_AUTHORITY.certificate_pem())}, tls.key: {_b64(_AUTHORITY.key_pem())}}}
"""


def upstream(name: str, extra: str = "") -> Mesh:
    return resolve(load_objects((UPSTREAM / name).read_text() + extra, name))


def gateway_status(mesh: Mesh, name: str) -> dict[str, Any]:
    found = mesh.get("Gateway", NS, name)
    assert found is not None
    return status(mesh, found)


def condition(conditions: list[dict[str, Any]], kind: str) -> tuple[str, str]:
    [found] = [item for item in conditions if item["type"] == kind]
    return found["status"], found["reason"]


def listener(out: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [item for item in out["listeners"] if item["name"] == name]
    return found


def served_ports(mesh: Mesh, name: str) -> list[str]:
    return sorted(compiled(mesh, gateway(name, NS)).resources[LISTENER.type_url])


def test_an_unsupported_listener_protocol_is_stored_and_reported() -> None:
    mesh = upstream("gateway-invalid-listeners-unsupported-protocol.yaml")
    only = gateway_status(mesh, "gateway-only-unsupported-protocols")
    assert condition(only["conditions"], "Accepted") == ("False", "ListenersNotValid")
    invalid = listener(only, "invalid")
    assert condition(invalid["conditions"], "Accepted") == ("False", "UnsupportedProtocol")
    assert invalid["supportedKinds"] == [] and invalid["attachedRoutes"] == 0
    assert served_ports(mesh, "gateway-only-unsupported-protocols") == []
    some = gateway_status(mesh, "gateway-supported-and-unsupported-protocols")
    assert condition(some["conditions"], "Accepted") == ("True", "ListenersNotValid")
    http = listener(some, "http")
    assert condition(http["conditions"], "Accepted") == ("True", "Accepted")
    assert {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"} in http["supportedKinds"]
    assert listener(some, "invalid")["supportedKinds"] == []
    # the valid listener is served, the invalid one is not
    assert served_ports(mesh, "gateway-supported-and-unsupported-protocols") == ["gateway|80"]


def test_the_api_servers_listener_rules_still_refuse() -> None:
    base = ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
            "spec:\n  gatewayClassName: c\n  listeners:\n")
    for body, field in (
            ("  - {name: a, port: 1, protocol: 'not valid!'}\n", "protocol"),
            ("  - {name: a, port: 1, protocol: UDP, hostname: a.example.com}\n", "hostname"),
            ("  - {name: a, port: 1, protocol: UDP, tls: {mode: Passthrough}}\n", "tls")):
        with pytest.raises(MeshError) as caught:
            load_objects(base + body)
        assert caught.value.field == f"spec.listeners[0].{field}"
    [udp] = load_objects(base + "  - {name: a, port: 53, protocol: UDP}\n")
    mesh = resolve([udp])
    assert condition(status(mesh, udp)["listeners"][0]["conditions"], "Accepted") == (
        "False", "UnsupportedProtocol")


def test_a_malformed_certificate_is_stored_and_its_listener_not_served() -> None:
    mesh = upstream("gateway-invalid-tls-configuration.yaml", GOOD_SECRET)
    secret = mesh.get("Secret", NS, "malformed-certificate")
    assert secret is not None and not secret.spec.usable_tls
    for name in ("gateway-certificate-nonexistent-secret", "gateway-certificate-unsupported-group",
                 "gateway-certificate-unsupported-kind", "gateway-certificate-malformed-secret"):
        https = listener(gateway_status(mesh, name), "https")
        assert condition(https["conditions"], "ResolvedRefs") == (
            "False", "InvalidCertificateRef"), name
        assert {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"} in \
            https["supportedKinds"]
        assert served_ports(mesh, name) == [], name


def test_a_bad_secret_does_not_change_what_a_good_listener_serves() -> None:
    good = f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: good, namespace: {NS}}}
spec:
  gatewayClassName: c
  listeners:
  - name: https
    port: 443
    protocol: HTTPS
    tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}
"""
    alone = resolve(load_objects(GOOD_SECRET + good))
    beside = upstream("gateway-invalid-tls-configuration.yaml", GOOD_SECRET + good)
    assert as_dict(compiled(alone, gateway("good", NS)), LISTENER.type_url, "gateway|443") == \
        as_dict(compiled(beside, gateway("good", NS)), LISTENER.type_url, "gateway|443")


def test_backend_client_certificate_references_are_reported_on_the_gateway() -> None:
    mesh = upstream("gateway-invalid-tls-backend-configuration.yaml", GOOD_SECRET)
    assert mesh.get("Secret", NS, "malformed-client-certificate") is not None  # Opaque, stored
    for name, reason in (
            ("gateway-client-certificate-nonexistent-secret", "InvalidClientCertificateRef"),
            ("gateway-client-certificate-unsupported-group", "InvalidClientCertificateRef"),
            ("gateway-client-certificate-unsupported-kind", "InvalidClientCertificateRef"),
            ("gateway-client-certificate-malformed-secret", "InvalidClientCertificateRef"),
            ("gateway-client-certificate-missing-reference-grant", "RefNotPermitted")):
        out = gateway_status(mesh, name)
        assert condition(out["conditions"], "ResolvedRefs") == ("False", reason), name
        assert condition(out["conditions"], "Accepted") == ("True", "Accepted"), name


def test_a_good_backend_client_certificate_resolves() -> None:
    text = GOOD_SECRET + f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: g, namespace: {NS}}}
spec:
  gatewayClassName: c
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
  tls: {{backend: {{clientCertificateRef: {{name: tls-validity-checks-certificate}}}}}}
"""
    mesh = resolve(load_objects(text))
    assert [item["type"] for item in gateway_status(mesh, "g")["conditions"]] == ["Accepted"]
    with pytest.raises(MeshError) as caught:  # FrontendTLSValidation: at least one CA
        load_objects(text.replace("backend:", "frontend: {default: {validation: "
                                              "{caCertificateRefs: []}}}, backend:"))
    assert caught.value.field == "spec.tls.frontend.default.validation.caCertificateRefs"


def test_an_unsupported_address_type_is_stored_and_not_accepted() -> None:
    """The runner substitutes the suite's placeholders (usable and unusable addresses)."""
    text = (UPSTREAM / "gateway-static-addresses.yaml").read_text().replace(
        "PLACEHOLDER_UNUSABLE_ADDRS", "192.0.2.1").replace("PLACEHOLDER_USABLE_ADDRS",
                                                           "127.0.0.1")
    mesh = resolve(load_objects(text))
    out = gateway_status(mesh, "gateway-static-addresses")
    assert condition(out["conditions"], "Accepted") == ("False", "UnsupportedAddress")
    assert served_ports(mesh, "gateway-static-addresses") == []
    fixed = text.replace('  - type: "test/fake-invalid-type"\n    value: "fake address teehee!"\n',
                         "")
    mesh = resolve(load_objects(fixed))
    out = gateway_status(mesh, "gateway-static-addresses")
    assert condition(out["conditions"], "Accepted") == ("True", "Accepted")
    assert out["addresses"] == [{"type": "IPAddress", "value": "192.0.2.1"},
                                {"type": "IPAddress", "value": "127.0.0.1"}]
    assert served_ports(mesh, "gateway-static-addresses") == ["gateway|8080"]


def test_an_address_without_a_value_is_legal() -> None:
    mesh = upstream("gateway-optional-address-value.yaml")
    out = gateway_status(mesh, "gateway-without-address-value")
    assert condition(out["conditions"], "Accepted") == ("True", "Accepted")
    assert served_ports(mesh, "gateway-without-address-value") == ["gateway|8080"]


@pytest.mark.parametrize(("addresses", "field", "message"), [
    ("[{value: not-an-ip}]", "spec.addresses[0].value", "invalid IP address"),
    ("[{value: 10.0.0.1}, {value: 10.0.0.1}]", "spec.addresses[1].value", "must be unique"),
    ("[{type: 'bad type', value: x}]", "spec.addresses[0].type", "must match"),
    ("[{type: Hostname, value: 'Not_A_Host'}]", "spec.addresses[0].value", "invalid hostname"),
])
def test_addresses_the_api_server_refuses(addresses: str, field: str, message: str) -> None:
    text = ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g}\n"
            f"spec:\n  gatewayClassName: c\n  addresses: {addresses}\n"
            "  listeners: [{name: a, port: 80, protocol: HTTP}]\n")
    with pytest.raises(MeshError) as caught:
        load_objects(text)
    assert caught.value.field == field and message in caught.value.message


def test_infrastructure_labels_and_annotations_are_taken() -> None:
    mesh = upstream("gateway-infrastructure.yaml")
    found = mesh.get("Gateway", NS, "gateway-with-infrastructure-metadata")
    assert found is not None
    assert dict(found.spec.infrastructure.labels) == {"key2": "value2"}
    assert dict(found.spec.infrastructure.annotations) == {"key1": "value1"}
    out = gateway_status(mesh, "gateway-with-infrastructure-metadata")
    assert condition(out["conditions"], "Accepted") == ("True", "Accepted")
    with pytest.raises(MeshError) as caught:
        load_objects((UPSTREAM / "gateway-infrastructure.yaml").read_text().replace(
            "key2: value2", "'-bad': value2"))
    assert caught.value.field == "spec.infrastructure.labels.-bad"


def test_a_parameters_ref_is_invalid_parameters() -> None:
    mesh = upstream("gateway-invalid-parameters-ref.yaml")
    out = gateway_status(mesh, "gateway-invalid-parameters-ref")
    assert condition(out["conditions"], "Accepted") == ("False", "InvalidParameters")
    assert served_ports(mesh, "gateway-invalid-parameters-ref") == []


def test_route_kinds_a_listener_cannot_serve() -> None:
    mesh = upstream("gateway-invalid-route-kind.yaml")
    only = listener(gateway_status(mesh, "gateway-only-invalid-route-kind"), "http")
    assert condition(only["conditions"], "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert only["supportedKinds"] == []
    some = listener(gateway_status(mesh, "gateway-supported-and-invalid-route-kind"), "http")
    assert condition(some["conditions"], "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert some["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
