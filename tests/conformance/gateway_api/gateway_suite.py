"""The conformance suite's Gateway-only tests (features Gateway, and ReferenceGrant for the
Secret ones): they count in the core of every gateway profile (GATEWAY-HTTP, GATEWAY-GRPC,
GATEWAY-TLS, ...) since their features are within each. Translated by hand from
`conformance/tests/gateway*.go` at the commit in upstream/UPSTREAM; none sends traffic, all check
Gateway and GatewayClass status, three after changing the object mid-test.
"""

from __future__ import annotations

from tests.conformance.gateway_api.gateway_steps import (
    GatewayConformanceTest,
    Subtest,
)
from tests.conformance.gateway_api.status import (
    NN,
    Condition,
    GatewayClassAccepted,
    GatewayCondition,
    GatewayListeners,
    LatestConditions,
    ListenerStatus,
    NamespacesReady,
    ObservedGenerationBumped,
    Update,
)

GATEWAY = ("Gateway",)
ACCEPTED_AND_RESOLVED = (Condition("Accepted", "True"), Condition("ResolvedRefs", "True"))
# GatewayNameMaximumLength: the prefix padded with "a" to 253 characters
_PREFIX = "gateway-name-maximum-length-"
MAXIMUM_LENGTH_NAME = _PREFIX + "a" * (253 - len(_PREFIX))


def _https(*conditions: Condition) -> tuple[ListenerStatus, ...]:
    return (ListenerStatus("https", ("HTTPRoute",), conditions, 0),)


def _secret_test(short: str, description: str, name: str, ok: bool) -> GatewayConformanceTest:
    if ok:
        subtest = ("Gateway listener should have a true ResolvedRefs condition and a true "
                   "Programmed condition")
        listeners = _https(Condition("Programmed", "True", "Programmed"),
                           Condition("ResolvedRefs", "True"))
    else:
        subtest = ("Gateway listener should have a false ResolvedRefs condition with reason "
                   "RefNotPermitted")
        listeners = _https(Condition("ResolvedRefs", "False", "RefNotPermitted"))
    return GatewayConformanceTest(
        short, description, ("Gateway", "ReferenceGrant"), (f"tests/{name}.yaml",),
        (Subtest(subtest, (GatewayListeners(NN(name), listeners),)),),
        upstream_file=f"{name}.go")


def _listener_change(subtest: str, gateway: str, change: dict[str, object], note: str,
                     listeners: tuple[ListenerStatus, ...]) -> Subtest:
    """GatewayModifyListeners' subtests: ready, latest conditions, patch the listeners, ready
    again, the listeners' status, latest conditions, generation changed."""
    return Subtest(subtest, (
        NamespacesReady(), LatestConditions("Gateway", NN(gateway)),
        Update("Gateway", NN(gateway), change, note), NamespacesReady(),
        GatewayListeners(NN(gateway), listeners), LatestConditions("Gateway", NN(gateway)),
        ObservedGenerationBumped("Gateway", NN(gateway))))


GATEWAY_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "GatewayListenerUnsupportedProtocol",
        "A Gateway should set the Accepted condition to False with reason "
        "UnsupportedProtocol on listeners whose protocol is not supported. The Gateway "
        "itself should only be Accepted if at least one of its listeners is accepted.", GATEWAY,
        ("tests/gateway-invalid-listeners-unsupported-protocol.yaml",),
        (Subtest("Gateway with no accepted listeners should not be accepted and the listener "
                 "should have the Accepted condition set to False with reason "
                 "UnsupportedProtocol", (
                     LatestConditions("Gateway", NN("gateway-only-unsupported-protocols")),
                     GatewayCondition(NN("gateway-only-unsupported-protocols"),
                                      Condition("Accepted", "False", "ListenersNotValid")),
                     GatewayListeners(NN("gateway-only-unsupported-protocols"), (
                         ListenerStatus("invalid", (), (
                             Condition("Accepted", "False", "UnsupportedProtocol"),)),)))),
         Subtest("Gateway with at least one accepted listeners should be accepted and the "
                 "listeners should have the Accepted condition set accordingly", (
                     LatestConditions("Gateway",
                                      NN("gateway-supported-and-unsupported-protocols")),
                     GatewayCondition(NN("gateway-supported-and-unsupported-protocols"),
                                      Condition("Accepted", "True", "ListenersNotValid")),
                     GatewayListeners(NN("gateway-supported-and-unsupported-protocols"), (
                         ListenerStatus("http", ("HTTPRoute",),
                                        (Condition("Accepted", "True", "Accepted"),)),
                         ListenerStatus("invalid", (), (
                             Condition("Accepted", "False", "UnsupportedProtocol"),))))))),
        upstream_file="gateway-invalid-listeners-unsupported-protocol.go"),
    GatewayConformanceTest(
        "GatewayInvalidParametersRef",
        "A Gateway referencing an invalid or non-existent parametersRef should set the "
        "Accepted condition to False with reason InvalidParameters.", GATEWAY,
        ("tests/gateway-invalid-parameters-ref.yaml",),
        (LatestConditions("Gateway", NN("gateway-invalid-parameters-ref")),
         GatewayCondition(NN("gateway-invalid-parameters-ref"),
                          Condition("Accepted", "False", "InvalidParameters"))),
        upstream_file="gateway-invalid-parameters-ref.go"),
    GatewayConformanceTest(
        "GatewayInvalidRouteKind",
        "A Gateway in the gateway-conformance-infra namespace should fail to become "
        "ready an invalid Route kind is specified.",
        GATEWAY, ("tests/gateway-invalid-route-kind.yaml",),
        (Subtest("Gateway listener should have a false ResolvedRefs condition with reason "
                 "InvalidRouteKinds and no supportedKinds", (GatewayListeners(
                     NN("gateway-only-invalid-route-kind"), (ListenerStatus("http", (), (
                         Condition("ResolvedRefs", "False", "InvalidRouteKinds"),)),)),)),
         Subtest("Gateway listener should have a false ResolvedRefs condition with reason "
                 "InvalidRouteKinds and HTTPRoute must be put in the supportedKinds", (
                     GatewayListeners(NN("gateway-supported-and-invalid-route-kind"), (
                         ListenerStatus("http", ("HTTPRoute",), (
                             Condition("ResolvedRefs", "False", "InvalidRouteKinds"),)),)),))),
        upstream_file="gateway-invalid-route-kind.go"),
    GatewayConformanceTest(
        "GatewayInvalidTLSConfiguration",
        "A Gateway should fail to become ready if the Gateway has an invalid TLS "
        "configuration", GATEWAY,
        ("tests/gateway-invalid-tls-configuration.yaml",),
        tuple(Subtest(subtest, (GatewayListeners(NN(gateway), _https(
            Condition("ResolvedRefs", "False", "InvalidCertificateRef"))),))
            for subtest, gateway in (
                ("Nonexistent secret referenced as CertificateRef in a Gateway listener",
                 "gateway-certificate-nonexistent-secret"),
                ("Unsupported group resource referenced as CertificateRef in a Gateway "
                 "listener", "gateway-certificate-unsupported-group"),
                ("Unsupported kind resource referenced as CertificateRef in a Gateway listener",
                 "gateway-certificate-unsupported-kind"),
                ("Malformed secret referenced as CertificateRef in a Gateway listener",
                 "gateway-certificate-malformed-secret"))),
        upstream_file="gateway-invalid-tls-configuration.go"),
    GatewayConformanceTest(
        "GatewayModifyListeners",
        "A Gateway in the gateway-conformance-infra namespace should handle adding and "
        "removing listeners.", GATEWAY, ("tests/gateway-modify-listeners.yaml",),
        (_listener_change(
            "should be able to add a listener that then becomes available for routing traffic",
            "gateway-add-listener",
            {"spec.listeners": "+ {name: http, port: 80, protocol: HTTP, hostname: "
             "data.test.com, allowedRoutes: {namespaces: {from: All}}}"},
            "a merge patch appending a listener",
            (ListenerStatus("https", ("HTTPRoute",), ACCEPTED_AND_RESOLVED, 1),
             ListenerStatus("http", ("HTTPRoute",), ACCEPTED_AND_RESOLVED, 1))),
         _listener_change(
             "should be able to remove listeners, which would then stop routing the relevant "
             "traffic", "gateway-remove-listener",
             {"spec.listeners": "only the listener named http (the Go test requires 2 before)"},
             "a merge patch dropping the https listener",
             (ListenerStatus("http", ("HTTPRoute",), ACCEPTED_AND_RESOLVED, 1),))),
        upstream_file="gateway-modify-listeners.go"),
    GatewayConformanceTest(
        "GatewayNameMaximumLength",
        "A Gateway with a 253-character name should be reconciled by the "
        "implementation.  The test only verifies that status conditions have an "
        "updated observedGeneration and does not assert specific condition values.",
        GATEWAY, ("tests/gateway-name-maximum-length.yaml",),
        (LatestConditions("Gateway", NN(MAXIMUM_LENGTH_NAME)),),
        upstream_file="gateway-name-maximum-length.go"),
    GatewayConformanceTest(
        "GatewayObservedGenerationBump",
        "A Gateway in the gateway-conformance-infra namespace should update the "
        "observedGeneration in all of its Status.Conditions after an update to the spec", GATEWAY,
        ("tests/gateway-observed-generation-bump.yaml",),
        (Subtest("observedGeneration should increment", (
            NamespacesReady(), LatestConditions("Gateway", NN("gateway-observed-generation-bump")),
            Update("Gateway", NN("gateway-observed-generation-bump"),
                   {"spec.listeners": "+ {name: alternate, hostname: foo.com, port: 80, "
                    "protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}"},
                   "a merge patch appending a listener"),
            NamespacesReady(), LatestConditions("Gateway", NN("gateway-observed-generation-bump")),
            ObservedGenerationBumped("Gateway", NN("gateway-observed-generation-bump")))),),
        upstream_file="gateway-observed-generation-bump.go"),
    _secret_test("GatewaySecretInvalidReferenceGrant",
        "A Gateway in the gateway-conformance-infra namespace should fail to become "
        "ready if the Gateway has a certificateRef for a Secret in the "
        "gateway-conformance-web-backend namespace and a ReferenceGrant exists but "
        "does not grant permission to that specific Secret",
                 "gateway-secret-invalid-reference-grant", False),
    _secret_test("GatewaySecretMissingReferenceGrant",
        "A Gateway in the gateway-conformance-infra namespace should fail to become "
        "programmed if the Gateway has a certificateRef for a Secret in the "
        "gateway-conformance-web-backend namespace and a ReferenceGrant granting "
        "permission to the Secret does not exist",
                 "gateway-secret-missing-reference-grant", False),
    _secret_test("GatewaySecretReferenceGrantAllInNamespace",
        "A Gateway in the gateway-conformance-infra namespace should become programmed "
        "if the Gateway has a certificateRef for a Secret in the "
        "gateway-conformance-web-backend namespace and a ReferenceGrant granting "
        "permission to all Secrets in the namespace exists",
                 "gateway-secret-reference-grant-all-in-namespace", True),
    _secret_test("GatewaySecretReferenceGrantSpecific",
        "A Gateway in the gateway-conformance-infra namespace should become programmed "
        "if the Gateway has a certificateRef for a Secret in the "
        "gateway-conformance-web-backend namespace and a ReferenceGrant granting "
        "permission to the specific Secret exists",
                 "gateway-secret-reference-grant-specific", True),
    GatewayConformanceTest(
        "GatewayClassObservedGenerationBump",
        "A GatewayClass should update the observedGeneration in all of it's "
        "Status.Conditions after an update to the spec", GATEWAY,
        ("tests/gatewayclass-observed-generation-bump.yaml",),
        (Subtest("observedGeneration should increment", (
            GatewayClassAccepted("gatewayclass-observed-generation-bump", ""),
            LatestConditions("GatewayClass", NN("gatewayclass-observed-generation-bump", "")),
            Update("GatewayClass", NN("gatewayclass-observed-generation-bump", ""),
                   {"spec.description": "new"}, "a merge patch of the description"),
            GatewayClassAccepted("gatewayclass-observed-generation-bump", ""),
            LatestConditions("GatewayClass", NN("gatewayclass-observed-generation-bump", "")),
            ObservedGenerationBumped("GatewayClass",
                                     NN("gatewayclass-observed-generation-bump", "")))),),
        upstream_file="gatewayclass-observed-generation-bump.go"),
)
