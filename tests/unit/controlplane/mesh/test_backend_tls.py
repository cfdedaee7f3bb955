"""BackendTLSPolicy with ConfigMap CA bundles, on the conformance suite's own manifests: what
loads (and what the CRD refuses), the policy's status per ancestor Gateway, conflicts, and the
UpstreamTlsContext of the targeted Service port's cluster."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.ca import CertificateAuthority
from controlplane.mesh import MeshError, load_objects, read_objects, resolve, status
from controlplane.mesh.backendtls import SYSTEM_CA_FILE
from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.deps import Provenance
from controlplane.mesh.compile.node import MeshNode
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.objects import ObjectKey
from controlplane.mesh.resolve import Mesh
from controlplane.resources import CLUSTER, LISTENER
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, gateway, sidecar

CONFORMANCE = Path(__file__).parents[4] / "tests/conformance/gateway_api/upstream/conformance"
NS = "gateway-conformance-infra"
CA = CertificateAuthority.create_root(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
CA_PEM = CA.certificate_pem().decode()
# The suite makes this ConfigMap in code (gateway_steps.SUITE_SETUP): the tls-backend's CA.
CA_CONFIG_MAP = f"""---
apiVersion: v1
kind: ConfigMap
metadata: {{name: tls-checks-ca-certificate, namespace: {NS}}}
data:
  ca.crt: |
{"".join("    " + line + chr(10) for line in CA_PEM.splitlines())}"""


# ... and the frontend certificate of the HTTPS Gateway of the base manifests.
FRONTEND = f"""---
apiVersion: v1
kind: Secret
metadata: {{name: tls-validity-checks-certificate, namespace: {NS}}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{"".join("    " + line + chr(10) for line in CA_PEM.splitlines())}  tls.key: |
{"".join("    " + line + chr(10) for line in CA.key_pem().decode().splitlines())}"""


def suite_mesh(*manifests: str, extra: str = CA_CONFIG_MAP) -> Mesh:
    """The base manifests (what loads of them: Deployments are the runner's) and the tests'."""
    objects, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    for name in manifests:  # their Deployments are the runner's
        found, errors = read_objects((CONFORMANCE / "tests" / name).read_text(), name)
        assert all("Deployment" in error.location.obj for error in errors), errors
        objects += found
    return resolve(objects + load_objects(extra))


def policy_status(mesh: Mesh, name: str) -> dict[str, Any]:
    found = mesh.get("BackendTLSPolicy", NS, name)
    assert found is not None
    return status(mesh, found)


def conditions(out: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {item["type"]: (item["status"], item["reason"]) for item in out["conditions"]}


def tls_of(mesh: Mesh, service: str, port: int = 443, node: str = "same-namespace"
           ) -> dict[str, Any] | None:
    """The transport socket of the Gateway's cluster for a Service port (its own variant when
    a policy applies); None when there is no such cluster."""
    resources = compiled(mesh, gateway(node, NS))
    names = [name for name in resources.resources[CLUSTER.type_url]
             if name.startswith(f"outbound|{port}|") and name.endswith(f"|{service}.{NS}")]
    if not names:
        return None
    [name] = names
    found = as_dict(resources, CLUSTER.type_url, name)
    return found.get("transport_socket", {}).get("typed_config", {})


def test_a_policy_originates_tls_with_the_configmap_ca_and_hostname() -> None:
    mesh = suite_mesh("backendtlspolicy.yaml", extra=CA_CONFIG_MAP + FRONTEND)
    out = policy_status(mesh, "normative-test")
    assert conditions(out) == {"Accepted": ("True", "Accepted"),
                               "ResolvedRefs": ("True", "ResolvedRefs")}
    assert [item["ancestorRef"]["name"] for item in out["ancestors"]] == [
        "same-namespace", "same-namespace-with-https-listener"]
    tls = tls_of(mesh, "backendtlspolicy-test")
    assert tls is not None
    assert tls["sni"] == "abc.example.com"
    context = tls["common_tls_context"]
    assert context["validation_context"]["trusted_ca"]["inline_string"] == CA_PEM
    assert context["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "abc.example.com"}}]
    assert context["alpn_protocols"] == ["http/1.1"]
    # appProtocol HTTPS behind a policy: the route's HTTP goes inside the TLS
    route = mesh.get("HTTPRoute", NS, "backendtlspolicy")
    assert route is not None
    assert conditions(status(mesh, route))["ResolvedRefs"] == ("True", "ResolvedRefs")
    assert tls_of(mesh, "backendtlspolicy-host-mismatch-test") is not None
    # sidecars pass the TLS through: the port is `tls` for them, their cluster is plain
    assert mesh.protocol(NS, "backendtlspolicy-test", 443) == "tls"
    caller = compiled(mesh, sidecar("infra-backend-v1", NS))
    for name in caller.resources[CLUSTER.type_url]:
        found = as_dict(caller, CLUSTER.type_url, name).get("transport_socket", {})
        assert found.get("typed_config", {}).get("sni") != "abc.example.com", name


def test_a_service_without_a_policy_stays_plain() -> None:
    mesh = suite_mesh("httproute-simple-same-namespace.yaml")
    tls = tls_of(mesh, "infra-backend-v1", 8080)
    assert tls == {}


def test_subject_alt_names_replace_the_hostname_for_verification() -> None:
    mesh = suite_mesh("backendtlspolicy-san.yaml")
    tls = tls_of(mesh, "backendtlspolicy-san-dns-mismatch-test")
    assert tls is not None and tls["sni"] == "abc.example.com"
    assert tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "dce.example.com"}}]
    uri = tls_of(mesh, "backendtlspolicy-san-uri-test")
    assert uri is not None
    assert uri["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0][
        "san_type"] == "URI"


def test_conflicts_go_to_the_older_policy_and_a_port_scoped_one_wins() -> None:
    mesh = suite_mesh("backendtlspolicy-conflict-resolution.yaml")
    verdicts = {name: conditions(policy_status(mesh, name))["Accepted"] for name in (
        "conflicted-without-section-name-1", "conflicted-without-section-name-2",
        "conflicted-with-section-name-1", "conflicted-with-section-name-2",
        "not-conflicted-with-section-name", "not-conflicted-without-section-name")}
    assert verdicts == {
        "conflicted-without-section-name-1": ("True", "Accepted"),
        "conflicted-without-section-name-2": ("False", "Conflicted"),
        "conflicted-with-section-name-1": ("True", "Accepted"),
        "conflicted-with-section-name-2": ("False", "Conflicted"),
        "not-conflicted-with-section-name": ("True", "Accepted"),
        "not-conflicted-without-section-name": ("True", "Accepted")}
    first = mesh.get("BackendTLSPolicy", NS, "conflicted-without-section-name-1")
    assert first is not None
    settings = mesh.backend_tls[(NS, "backendtlspolicy-conflicted-without-section-name-test",
                                 443)]
    assert settings.policy == first.key and settings.hostname == first.spec.hostname


def test_an_invalid_ca_kind_or_configmap_fails_the_backend() -> None:
    mesh = suite_mesh("backendtlspolicy-invalid-kind.yaml",
                      "backendtlspolicy-invalid-ca-certificate-ref.yaml")
    assert conditions(policy_status(mesh, "invalid-kind")) == {
        "Accepted": ("False", "NoValidCACertificate"), "ResolvedRefs": ("False", "InvalidKind")}
    for name in ("nonexistent-ca-certificate-ref", "malformed-ca-certificate-ref"):
        assert conditions(policy_status(mesh, name)) == {
            "Accepted": ("False", "NoValidCACertificate"),
            "ResolvedRefs": ("False", "InvalidCACertificateRef")}, name
    # never sent in clear: the cluster is not served, the route's requests get a 5xx
    assert tls_of(mesh, "backendtlspolicy-invalid-kind-test") is None
    assert tls_of(mesh, "backendtlspolicy-malformed-ca-certificate-ref-test") is None


def test_a_fixed_configmap_brings_the_backend_back() -> None:
    fixed = CA_CONFIG_MAP.replace("tls-checks-ca-certificate", "malformed-ca-certificate")
    objects = [obj for obj in load_objects(
        (CONFORMANCE / "tests/backendtlspolicy-invalid-ca-certificate-ref.yaml").read_text())
        if obj.kind != "ConfigMap"]
    base, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    mesh = resolve(base + objects + load_objects(fixed))
    assert conditions(policy_status(mesh, "malformed-ca-certificate-ref"))["Accepted"] == (
        "True", "Accepted")
    assert tls_of(mesh, "backendtlspolicy-malformed-ca-certificate-ref-test") is not None


def test_well_known_system_certificates_use_the_system_bundle() -> None:
    text = (CONFORMANCE / "tests/backendtlspolicy-invalid-kind.yaml").read_text().replace(
        """    caCertificateRefs:
      - group: invalid.io
        kind: InvalidKind
        name: "invalid-kind"
""", "    wellKnownCACertificates: System\n")
    base, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    mesh = resolve(base + load_objects(text))
    assert conditions(policy_status(mesh, "invalid-kind"))["Accepted"] == ("True", "Accepted")
    tls = tls_of(mesh, "backendtlspolicy-invalid-kind-test")
    assert tls is not None
    assert tls["common_tls_context"]["validation_context"]["trusted_ca"] == {
        "filename": SYSTEM_CA_FILE}
    other = resolve(base + load_objects(text.replace("System", "example.com/mine")))
    assert conditions(policy_status(other, "invalid-kind"))["Accepted"] == ("False", "Invalid")
    assert tls_of(other, "backendtlspolicy-invalid-kind-test") is None


POLICY = """apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {name: p}
spec:
  targetRefs: TARGETS
  validation: VALIDATION
"""
CM = "[{group: '', kind: ConfigMap, name: ca}]"


@pytest.mark.parametrize(("targets", "validation", "field", "message"), [
    ("[{group: '', kind: Service, name: s}]", f"{{caCertificateRefs: {CM}, "
     "wellKnownCACertificates: System, hostname: a.example.com}", "wellKnownCACertificates",
     "must not contain both"),
    ("[{group: '', kind: Service, name: s}]", "{hostname: a.example.com}", "caCertificateRefs",
     "must specify either"),
    ("[{group: '', kind: Service, name: s}]", f"{{caCertificateRefs: {CM}, "
     "hostname: '*.example.com'}", "hostname", "must match"),
    ("[{group: '', kind: Service, name: s}]", f"{{caCertificateRefs: {CM}, hostname: a.b, "
     "subjectAltNames: [{type: URI, hostname: a.b}]}", "hostname", "must not contain Hostname"),
    ("[{group: '', kind: Service, name: s}]", f"{{caCertificateRefs: {CM}, hostname: a.b, "
     "subjectAltNames: [{type: URI, uri: 'not a uri'}]}", "uri", "must match"),
    ("[{group: '', kind: Service, name: s}, {group: '', kind: Service, name: s}]",
     f"{{caCertificateRefs: {CM}, hostname: a.b}}", "sectionName", "must be specified"),
    ("[]", f"{{caCertificateRefs: {CM}, hostname: a.b}}", "targetRefs", "at least 1"),
])
def test_what_the_crd_refuses(targets: str, validation: str, field: str, message: str) -> None:
    with pytest.raises(MeshError) as caught:
        load_objects(POLICY.replace("TARGETS", targets).replace("VALIDATION", validation))
    assert caught.value.field.endswith(field) and message in caught.value.message


def test_options_are_refused_not_ignored() -> None:
    text = POLICY.replace("TARGETS", "[{group: '', kind: Service, name: s}]").replace(
        "VALIDATION", f"{{caCertificateRefs: {CM}, hostname: a.b}}\n  options: {{a: b}}")
    with pytest.raises(MeshError) as caught:
        load_objects(text)
    assert caught.value.field == "spec.options"


def test_the_gateway_presents_its_backend_client_certificate() -> None:
    """GatewayTLSBackendClientCertificate: spec.tls.backend.clientCertificateRef goes into the
    UpstreamTlsContext of the Gateway's clusters that a BackendTLSPolicy makes TLS."""
    client = FRONTEND.replace("tls-validity-checks-certificate", "tls-checks-client-certificate")
    mesh = suite_mesh("gateway-tls-backend-client-certificate.yaml", extra=CA_CONFIG_MAP + client)
    found = mesh.get("Gateway", NS, "gateway-tls-backend-client-certificate")
    assert found is not None
    assert "ResolvedRefs" not in conditions(status(mesh, found))  # the listeners' sum: True
    tls = tls_of(mesh, "tls-backend-with-client-cert-validation",
                 node="gateway-tls-backend-client-certificate")
    assert tls is not None
    [certificate] = tls["common_tls_context"]["tls_certificates"]
    assert certificate["certificate_chain"]["inline_string"] == CA_PEM
    # without the Secret the Gateway reports it, and presents nothing
    mesh = suite_mesh("gateway-tls-backend-client-certificate.yaml", extra=CA_CONFIG_MAP)
    found = mesh.get("Gateway", NS, "gateway-tls-backend-client-certificate")
    assert found is not None
    assert conditions(status(mesh, found))["ResolvedRefs"] == (
        "False", "InvalidClientCertificateRef")
    tls = tls_of(mesh, "tls-backend-with-client-cert-validation",
                 node="gateway-tls-backend-client-certificate")
    assert tls is not None and "tls_certificates" not in tls["common_tls_context"]


def test_a_terminating_tls_listener_reencrypts_to_a_policy_backend() -> None:
    """BackendTLSPolicyTLSRouteTerminate: a TLS listener in mode Terminate decrypts, and the
    TLSRoute's backend with a policy gets the bytes re-encrypted with the policy's SNI and CA;
    a Passthrough listener's connections are never re-encrypted."""
    terminate = FRONTEND.replace("tls-validity-checks-certificate",
                                 "tls-terminate-checks-certificate")
    mesh = suite_mesh("backendtlspolicy-tlsroute-terminate.yaml",
                      extra=CA_CONFIG_MAP + terminate)
    assert conditions(policy_status(mesh, "btls-tlsroute-terminate-test")) == {
        "Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert [item["ancestorRef"]["name"] for item in policy_status(
        mesh, "btls-tlsroute-terminate-test")["ancestors"]] == ["gateway-btls-tlsroute-terminate"]
    tls = tls_of(mesh, "btls-terminate-tls-backend", 8443,
                 node="gateway-btls-tlsroute-terminate")
    assert tls is not None and tls["sni"] == "abc.example.com"
    assert "alpn_protocols" not in tls["common_tls_context"]  # the client's bytes, as they are
    passthrough = (CONFORMANCE / "tests/backendtlspolicy-tlsroute-terminate.yaml").read_text(
    ).replace("mode: Terminate", "mode: Passthrough").replace(
        "      certificateRefs:\n      - name: tls-terminate-checks-certificate\n", "")
    base, _ = read_objects((CONFORMANCE / "base/manifests.yaml").read_text())
    mesh = resolve(base + load_objects(passthrough) + load_objects(CA_CONFIG_MAP))
    assert tls_of(mesh, "btls-terminate-tls-backend", 8443,
                  node="gateway-btls-tlsroute-terminate") == {}


def test_the_gateway_cluster_comes_from_the_policy_and_its_configmap() -> None:
    """deps.Provenance: a NACK of the TLS cluster concerns the policy and its ConfigMap, and
    their Programmed condition follows the Gateway proxies that use them."""
    mesh = suite_mesh("backendtlspolicy.yaml")
    compiler = MeshCompiler(mesh)
    out = compiler.compile_node(gateway("same-namespace", NS))
    provenance = Provenance(compiler.memo)
    [name] = [name for name in out.resources[CLUSTER.type_url]
              if name.endswith(f"|backendtlspolicy-test.{NS}")]
    found = provenance.objects_of(out.resources[CLUSTER.type_url][name])
    assert {ObjectKey("BackendTLSPolicy", NS, "normative-test"),
            ObjectKey("ConfigMap", NS, "tls-checks-ca-certificate")} <= found


def test_grpc_inside_the_tls_is_http2_with_alpn_h2() -> None:
    """BackendTLSPolicyGRPCRoute: a GRPCRoute's backend behind a policy gets h2 inside the
    TLS (ALPN h2, HTTP/2 protocol options on the Gateway's cluster)."""
    mesh = suite_mesh("backendtlspolicy-grpcroute.yaml")
    resources = compiled(mesh, gateway("same-namespace", NS))
    [name] = [name for name in resources.resources[CLUSTER.type_url]
              if name.endswith(f"|backendtlspolicy-grpc-test.{NS}")]
    found = as_dict(resources, CLUSTER.type_url, name)
    context = found["transport_socket"]["typed_config"]["common_tls_context"]
    assert context["alpn_protocols"] == ["h2"]
    options = found["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}


def _inbound_chains(mesh: Mesh, port: int = 8443) -> list[dict[str, Any]]:
    """The filter chains of the tls-backend workload's sidecar at its TLS port, with the
    mesh's identities on (PERMISSIVE unless a PeerAuthentication says otherwise)."""
    node = MeshNode("tls-backend-1", "Workload", "tls-backend", NS, "10.0.0.4", "127.0.0.1",
                    "127.0.0.2", labels=(("app", "tls-backend"),))
    resources = MeshCompiler(mesh, identity=MeshIdentity()).compile_node(node)
    chains: list[dict[str, Any]] = as_dict(resources, LISTENER.type_url,
                                           f"inbound|{port}")["filter_chains"]
    return chains


def test_the_backend_sidecar_passes_the_policy_tls_through_to_the_application() -> None:
    """The Gateway's TLS (SNI: the policies' hostnames) reaches the application, which holds
    the certificate the policy trusts; the mesh's mTLS chain would answer with the mesh's
    certificate and ask for a client one (a 503 at the Gateway)."""
    chains = _inbound_chains(suite_mesh("backendtlspolicy.yaml"))
    passthrough = [chain for chain in chains
                   if chain.get("filter_chain_match", {}).get("server_names")]
    assert len(passthrough) == 1
    [chain] = passthrough
    assert chain["filter_chain_match"] == {
        "server_names": ["abc.example.com", "mismatch.example.com"],
        "transport_protocol": "tls"}
    assert "transport_socket" not in chain  # not terminated here
    assert [item["name"] for item in chain["filters"]] == ["envoy.filters.network.tcp_proxy"]
    assert chain["filters"][0]["typed_config"]["cluster"] == "inbound|8443"
    # the mesh's mTLS and plaintext chains stay
    matches = [chain.get("filter_chain_match") for chain in chains]
    assert {"transport_protocol": "tls"} in matches
    assert {"transport_protocol": "raw_buffer"} in matches


def test_no_policy_or_strict_mtls_keeps_the_port_to_the_mesh() -> None:
    without = _inbound_chains(suite_mesh())
    assert not any(chain.get("filter_chain_match", {}).get("server_names")
                   for chain in without)
    strict = f"""---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: strict, namespace: {NS}}}
spec: {{mtls: {{mode: STRICT}}}}
"""
    chains = _inbound_chains(suite_mesh("backendtlspolicy.yaml", extra=CA_CONFIG_MAP + strict))
    assert [chain.get("filter_chain_match") for chain in chains] == [
        {"transport_protocol": "tls"}]
