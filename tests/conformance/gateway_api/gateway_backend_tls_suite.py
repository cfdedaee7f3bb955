"""The BackendTLSPolicy tests of the conformance suite (GATEWAY-HTTP extended; the GRPCRoute and
TLSRoute ones count in GATEWAY-GRPC and GATEWAY-TLS extended), translated by hand from
`conformance/tests/backendtlspolicy*.go` at the commit in upstream/UPSTREAM. The backend
(`tls-backend`, base manifests) serves TLS and reports the SNI it saw."""

from __future__ import annotations

from tests.conformance.gateway_api.expectations import (
    ExpectedRequest,
    ExpectedResponse,
    Request,
    Response,
)
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    SAME_NAMESPACE,
    GatewayConformanceTest,
    GatewayExchanges,
    Subtest,
    TLSExchange,
)
from tests.conformance.gateway_api.status import (
    NN,
    Condition,
    Create,
    GatewayRef,
    LatestConditions,
    NamespacesReady,
    ObservedGenerationBumped,
    PolicyCondition,
    RoutesAccepted,
    Update,
    resolved,
)

FEATURES = ("Gateway", "HTTPRoute", "BackendTLSPolicy")
SAME = SAME_NAMESPACE.nn
ACCEPTED = Condition("Accepted", "True", "Accepted")
RESOLVED = Condition("ResolvedRefs", "True", "ResolvedRefs")
CONFLICTED = Condition("Accepted", "False", "Conflicted")
NO_VALID_CA = Condition("Accepted", "False", "NoValidCACertificate")
INVALID_CA_REF = Condition("ResolvedRefs", "False", "InvalidCACertificateRef")
FIVE_HUNDREDS = (500, 502, 503)


def policy(name: str, *conditions: Condition, gateway: NN = SAME) -> tuple[PolicyCondition, ...]:
    return tuple(PolicyCondition(NN(name), gateway, condition) for condition in conditions)


def tls_to(path: str, sni: str, *, host: str = "abc.example.com", status: int = 0,
           statuses: tuple[int, ...] = (200,)) -> ExpectedResponse:
    """A request through the Gateway to the TLS backend; Request.SNI is the SNI the backend
    must have seen (CompareRoundTrip checks it)."""
    return ExpectedResponse(request=Request(host=host, path=path, sni=sni),
                            response=Response(status_code=status,
                                              status_codes=() if status else statuses),
                            namespace=INFRA)


def fails(path: str, sni: str, host: str = "abc.example.com") -> GatewayExchanges:
    """http.MakeRequestAndExpectFailure: consistently no successful answer."""
    return GatewayExchanges(SAME_NAMESPACE, (ExpectedResponse(
        request=Request(host=host, path=path, sni=sni), namespace=INFRA),),
        expect_failure=True, use_port=False)


def on_same(route: str) -> tuple[NamespacesReady, RoutesAccepted]:
    """NamespacesMustBeReady then GatewayAndRoutesMustBeAccepted(..., usePort false, ...)."""
    return (NamespacesReady(), RoutesAccepted(SAME_NAMESPACE, (NN(route),), use_port=False))


def exchange(*cases: ExpectedResponse) -> GatewayExchanges:
    return GatewayExchanges(SAME_NAMESPACE, cases, use_port=False)


_RECONCILE_CM = NN("tls-checks-ca-certificate-reconcile-test")

GATEWAY_BACKEND_TLS_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "BackendTLSPolicy",
        "BackendTLSPolicy must be used to configure TLS connection between gateway and "
        "backend", FEATURES, ("tests/backendtlspolicy.yaml",),
        (Subtest("Re-encrypt HTTPS request sent to Service with valid BackendTLSPolicy should "
                 "succeed", (
                     NamespacesReady(),
                     RoutesAccepted(GatewayRef("same-namespace-with-https-listener"),
                                    (NN("backendtlspolicy-reencrypt"),), use_port=False),
                     resolved(NN("backendtlspolicy-reencrypt"),
                              NN("same-namespace-with-https-listener")),
                     *policy("normative-test", ACCEPTED, RESOLVED,
                             gateway=NN("same-namespace-with-https-listener")),
                     # the client trusts the frontend listener's certificate
                     TLSExchange(GatewayRef("same-namespace-with-https-listener"),
                                 "https-listener.org", NN("tls-validity-checks-certificate"),
                                 ExpectedResponse(
                                     request=Request(host="https-listener.org",
                                                     path="/backendtlspolicy",
                                                     sni="https-listener.org"),
                                     expected_request=ExpectedRequest(
                                         path="/backendtlspolicy", sni="abc.example.com"),
                                     response=Response(status_codes=(200,)),
                                     namespace=INFRA)))),
         *on_same("backendtlspolicy"), resolved(NN("backendtlspolicy"), SAME),
         Subtest("HTTP request sent to Service with valid BackendTLSPolicy should succeed", (
             *policy("normative-test", ACCEPTED, RESOLVED),
             exchange(tls_to("/backendtlspolicy", "abc.example.com")))),
         Subtest("HTTP request sent to Service targeted by BackendTLSPolicy with mismatched "
                 "hostname should return an HTTP error", (
                     *policy("host-mismatch", ACCEPTED, RESOLVED),
                     fails("/backendtlspolicy-host-mismatch", "abc.example.com",
                           host="abc.example.org"))),
         Subtest("HTTP request send to Service targeted by BackendTLSPolicy with mismatched cert "
                 "should return HTTP error", (
                     *policy("cert-mismatch", ACCEPTED, RESOLVED),
                     fails("/backendtlspolicy-cert-mismatch", "abc.example.com"))),
         Subtest("Changing the content of a ConfigMap used by BackendTLSPolicy as CA certificate "
                 "should be reconciled by the controller", (
                     *policy("reconcile-test", ACCEPTED, RESOLVED),
                     Update("BackendTLSPolicy", NN("reconcile-test"), {
                         "spec.validation.caCertificateRefs": [
                             {"group": "", "kind": "ConfigMap", "name": _RECONCILE_CM.name}]},
                         "point the policy at a ConfigMap that does not exist yet"),
                     *policy("reconcile-test", NO_VALID_CA, INVALID_CA_REF),
                     Create("ConfigMap", _RECONCILE_CM, {"data": {
                         "ca.crt": "{ca.crt of ConfigMap tls-checks-ca-certificate}"}},
                         "a copy of the shared CA"),
                     *policy("reconcile-test", ACCEPTED, RESOLVED),
                     Update("ConfigMap", _RECONCILE_CM, {"data.ca.crt": ""}, "empty the CA"),
                     *policy("reconcile-test", NO_VALID_CA, INVALID_CA_REF),
                     Update("ConfigMap", _RECONCILE_CM, {
                         "data.ca.crt": "{ca.crt of ConfigMap tls-checks-ca-certificate}"},
                         "restore the CA"),
                     *policy("reconcile-test", ACCEPTED, RESOLVED),
                     Update("BackendTLSPolicy", NN("reconcile-test"), {
                         "spec.validation.caCertificateRefs": "{the original refs}"},
                         "restore the policy (cleanup)")))),
        upstream_file="backendtlspolicy.go"),
    GatewayConformanceTest(
        "BackendTLSPolicySANValidation",
        "BackendTLSPolicySANValidation extend BackendTLSPolicy with SubjectAltNames "
        "validation", (*FEATURES, "BackendTLSPolicySANValidation"),
        ("tests/backendtlspolicy-san.yaml",),
        (*on_same("backendtlspolicy-san-test"), resolved(NN("backendtlspolicy-san-test"), SAME),
         *(Subtest(f"HTTP request sent to Service {what} SAN should {outcome}", (
             *policy(name, ACCEPTED),
             exchange(tls_to(f"/backendtlspolicy-{name}", "abc.example.com")) if ok else
             fails(f"/backendtlspolicy-{name}", "abc.example.com")))
           for what, outcome, name, ok in (
               ("with valid BackendTLSPolicy containing dns", "succeed", "san-dns", True),
               ("targeted by BackendTLSPolicy with mismatched dns", "return an HTTP error",
                "san-dns-mismatch", False),
               ("with valid BackendTLSPolicy containing uri", "succeed", "san-uri", True),
               ("targeted by BackendTLSPolicy with mismatched uri", "return an HTTP error",
                "san-uri-mismatch", False),
               ("with valid BackendTLSPolicy containing multi", "succeed", "multiple-sans",
                True),
               ("targeted by BackendTLSPolicy with mismatched multi", "return an HTTP error",
                "multiple-mismatch-sans", False)))),
        upstream_file="backendtlspolicy-san.go"),
    GatewayConformanceTest(
        "BackendTLSPolicyConflictResolution",
        "Verifies that when multiple BackendTLSPolicies target the same Service, only "
        "one policy is accepted while conflicting policies are rejected, and traffic "
        "continues to route successfully.", FEATURES,
        ("tests/backendtlspolicy-conflict-resolution.yaml",),
        (*on_same("backendtlspolicy-conflict-resolution"),
         resolved(NN("backendtlspolicy-conflict-resolution"), SAME),
         *(Subtest(f"Conflicting BackendTLSPolicies targeting the same Service {what}", (
             Subtest("First BackendTLSPolicy should be accepted",
                     policy(f"conflicted-{suffix}-1", ACCEPTED)),
             # GEP-713 conflict resolution: the older policy wins
             Subtest("Second BackendTLSPolicy should have a false Accepted condition with reason "
                     "Conflicted ", policy(f"conflicted-{suffix}-2", CONFLICTED)),
             Subtest("HTTP request sent to Service using the accepted BackendTLSPolicy should "
                     "succeed", (exchange(tls_to(f"/backendtlspolicy-conflicted-{suffix}",
                                                 "other.example.com", status=200)),))))
           for what, suffix in (("without a section name", "without-section-name"),
                                ("with the same section name", "with-section-name"))),
         Subtest("BackendTLSPolicies targeting the same Service with and without a section name", (
             Subtest("BackendTLSPolicy with section name should be accepted",
                     policy("not-conflicted-with-section-name", ACCEPTED)),
             Subtest("BackendTLSPolicy without section name should be accepted",
                     policy("not-conflicted-without-section-name", ACCEPTED)),
             Subtest("HTTP request sent to Service using the BackendTLSPolicy with section name "
                     "should succeed", (exchange(tls_to(
                         "/backendtlspolicy-not-conflicted-with-section-name",
                         "other.example.com", status=200)),)),
             Subtest("HTTP request sent to Service using the BackendTLSPolicy without section "
                     "name should succeed", (exchange(tls_to(
                         "/backendtlspolicy-not-conflicted-without-section-name",
                         "abc.example.com", status=200)),))))),
        upstream_file="backendtlspolicy-conflict-resolution.go"),
    GatewayConformanceTest(
        "BackendTLSPolicyInvalidCACertificateRef",
        "A BackendTLSPolicy that specifies a single invalid CACertificateRef should "
        "have the Accepted and ResolvedRefs status condition set False with "
        "appropriate reasons, and HTTP requests to a backend targeted by this policy "
        "should fail with a 5xx response.", FEATURES,
        ("tests/backendtlspolicy-invalid-ca-certificate-ref.yaml",),
        (*on_same("backendtlspolicy-invalid-ca-certificate-ref"),
         *(Subtest(f"BackendTLSPolicy_{name}", (
             Subtest("BackendTLSPolicy with a single invalid CACertificateRef has a Accepted "
                     "Condition with status False and Reason NoValidCACertificate",
                     policy(name, NO_VALID_CA)),
             Subtest("BackendTLSPolicy with a single invalid CACertificateRef has a ResolvedRefs "
                     "Condition with status False and Reason InvalidCACertificateRef",
                     policy(name, INVALID_CA_REF)),
             Subtest("HTTP Request to backend targeted by an invalid BackendTLSPolicy receive a "
                     "5xx", (exchange(ExpectedResponse(
                         request=Request(host="abc.example.com", path=f"/backendtlspolicy-{name}"),
                         response=Response(status_codes=FIVE_HUNDREDS), namespace=INFRA)),))))
           for name in ("nonexistent-ca-certificate-ref", "malformed-ca-certificate-ref"))),
        upstream_file="backendtlspolicy-invalid-ca-certificate-ref.go"),
    GatewayConformanceTest(
        "BackendTLSPolicyInvalidKind",
        "A BackendTLSPolicy that specifies a single CACertificateRef with an invalid "
        "kind should have the Accepted and ResolvedRefs status condition set False "
        "with appropriate reasons, and HTTP requests to a backend targeted by this "
        "policy should fail with a 5xx response.",
        FEATURES, ("tests/backendtlspolicy-invalid-kind.yaml",),
        (*on_same("backendtlspolicy-invalid-kind-test"),
         Subtest("BackendTLSPolicy with a single invalid CACertificateRef has a Accepted "
                 "Condition with status False and Reason NoValidCACertificate",
                 policy("invalid-kind", NO_VALID_CA)),
         Subtest("BackendTLSPolicy with a single invalid CACertificateRef has a ResolvedRefs "
                 "Condition with status False and Reason InvalidKind",
                 policy("invalid-kind", Condition("ResolvedRefs", "False", "InvalidKind"))),
         Subtest("HTTP Request to backend targeted by an invalid BackendTLSPolicy receive a 5xx",
                 (exchange(ExpectedResponse(
                     request=Request(host="abc.example.com", path="/backendtlspolicy-invalid-kind"),
                     response=Response(status_codes=FIVE_HUNDREDS), namespace=INFRA)),))),
        upstream_file="backendtlspolicy-invalid-kind.go"),
    GatewayConformanceTest(
        "BackendTLSPolicyObservedGenerationBump",
        "A BackendTLSPolicy in the gateway-conformance-infra namespace should update "
        "the observedGeneration in all of its Status.Conditions after an update to the "
        "spec", FEATURES,
        ("tests/backendtlspolicy-observed-generation-bump.yaml",),
        (Subtest("observedGeneration should increment", (
            NamespacesReady(),
            LatestConditions("BackendTLSPolicy", NN("observed-generation-bump")),
            Update("BackendTLSPolicy", NN("observed-generation-bump"),
                   {"spec.validation.hostname": "foo.example.com"}, "a merge patch"),
            *policy("observed-generation-bump", Condition("Accepted", "True")),
            LatestConditions("BackendTLSPolicy", NN("observed-generation-bump")),
            ObservedGenerationBumped("BackendTLSPolicy", NN("observed-generation-bump")))),),
        upstream_file="backendtlspolicy-observed-generation-bump.go"),
)
