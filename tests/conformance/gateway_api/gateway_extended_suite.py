"""Gateway-level extended tests of the conformance suite (addresses, infrastructure metadata,
the Gateway's own client certificate towards backends), translated by hand from
`conformance/tests/gateway-*.go` at the commit in upstream/UPSTREAM. GatewayInfrastructure,
GatewayOptionalAddressValue and GatewayStaticAddresses name only Gateway features: they count in
the extended part of every gateway profile."""

from __future__ import annotations

from tests.conformance.gateway_api.expectations import ExpectedResponse, Request, Response
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    GatewayAddress,
    GatewayConformanceTest,
    GatewayExchanges,
    InfrastructurePropagated,
    StatusAddresses,
    Subtest,
)
from tests.conformance.gateway_api.status import (
    NN,
    Condition,
    GatewayCondition,
    GatewayListeners,
    GatewayRef,
    LatestConditions,
    ListenerStatus,
    NamespacesReady,
    PolicyCondition,
    RoutesAccepted,
    Update,
    resolved,
)

_STATIC = NN("gateway-static-addresses")
_CLIENT_CERT = "gateway-tls-backend-client-certificate"

GATEWAY_EXTENDED_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "GatewayInfrastructure",
        "Propagation of metadata from Gateway infrastructure to generated components",
        ("Gateway", "GatewayInfrastructurePropagation"),
        ("tests/gateway-infrastructure.yaml",),
        (NamespacesReady(),
         LatestConditions("Gateway", NN("gateway-with-infrastructure-metadata")),
         GatewayCondition(NN("gateway-with-infrastructure-metadata"),
                          Condition("Accepted", "True")),
         InfrastructurePropagated(NN("gateway-with-infrastructure-metadata"))),
        provisional=True, upstream_file="gateway-infrastructure.go"),
    GatewayConformanceTest(
        "GatewayOptionalAddressValue",
        "Check Gateway Support for GatewayAddressEmpty feature", ("Gateway", "GatewayAddressEmpty"),
        ("tests/gateway-optional-address-value.yaml",),
        (NamespacesReady(), LatestConditions("Gateway", NN("gateway-without-address-value")),
         GatewayAddress(GatewayRef("gateway-without-address-value", listeners=("http",)))),
        provisional=True, upstream_file="gateway-optional-address-value.go"),
    GatewayConformanceTest(
        "GatewayStaticAddresses",
        "A Gateway in the gateway-conformance-infra namespace should be able to use "
        "previously determined addresses.", ("Gateway", "GatewayStaticAddresses"),
        ("tests/gateway-static-addresses.yaml",),
        # spec.addresses holds 3 (the test requires it): [0] of a type the implementation does
        # not support, [1] one it cannot use, [2] a usable one (the suite fills the manifest's
        # placeholders from its UsableNetworkAddresses / UnusableNetworkAddresses options)
        (LatestConditions("Gateway", _STATIC),
         GatewayCondition(_STATIC, Condition("Accepted", "False", "UnsupportedAddress")),
         Update("Gateway", _STATIC, {"spec.addresses": "without [0]"}, "a merge patch"),
         LatestConditions("Gateway", _STATIC),
         GatewayCondition(_STATIC, Condition("Accepted", "True", "Accepted")),
         GatewayCondition(_STATIC, Condition("Programmed", "False", "AddressNotUsable")),
         Update("Gateway", _STATIC, {"spec.addresses": "without [0] and [1]"}, "a merge patch"),
         LatestConditions("Gateway", _STATIC),
         GatewayCondition(_STATIC, Condition("Accepted", "True", "Accepted")),
         GatewayCondition(_STATIC, Condition("Programmed", "True", "Programmed")),
         GatewayListeners(_STATIC, (ListenerStatus("http", ("HTTPRoute",), (
             Condition("Accepted", "True"), Condition("ResolvedRefs", "True")), 0),)),
         StatusAddresses(_STATIC, 1, present=(2,), absent=(0, 1))),
        upstream_file="gateway-static-addresses.go"),
    GatewayConformanceTest(
        "GatewayInvalidTLSBackendConfiguration",
        "A Gateway should have ResolvedRefs condition set false if the Gateway has an "
        "invalid backend TLS configuration",
        ("Gateway", "GatewayBackendClientCertificate", "HTTPRoute", "BackendTLSPolicy"),
        ("tests/gateway-invalid-tls-backend-configuration.yaml",),
        tuple(Subtest(name, (
            LatestConditions("Gateway", NN(gateway)),
            GatewayCondition(NN(gateway), Condition("ResolvedRefs", "False", reason)),
            GatewayCondition(NN(gateway), Condition("Accepted", "True", "Accepted"))))
            for name, gateway, reason in (
                ("Nonexistent secret referenced as ClientCertificateRef in Gateway backend TLS "
                 "configuration", "gateway-client-certificate-nonexistent-secret",
                 "InvalidClientCertificateRef"),
                ("Unsupported group resource referenced as ClientCertificateRef in Gateway "
                 "backend TLS configuration", "gateway-client-certificate-unsupported-group",
                 "InvalidClientCertificateRef"),
                ("Unsupported kind resource referenced as ClientCertificateRef inGateway backend "
                 "TLS configuration", "gateway-client-certificate-unsupported-kind",
                 "InvalidClientCertificateRef"),
                ("Malformed secret referenced as ClientCertificateRef in Gateway backend TLS "
                 "configuration", "gateway-client-certificate-malformed-secret",
                 "InvalidClientCertificateRef"),
                ("Secret referenced from another namespace without any ReferenceGrant as "
                 "ClientCertificateRef in Gateway backend TLS configuration",
                 "gateway-client-certificate-missing-reference-grant", "RefNotPermitted"))),
        upstream_file="gateway-invalid-tls-backend-configuration.go"),
    GatewayConformanceTest(
        "GatewayTLSBackendClientCertificate",
        "A Gateway with a client certificate configured should present the certificate "
        "when connecting to a backend using TLS.",
        ("Gateway", "GatewayBackendClientCertificate", "HTTPRoute", "BackendTLSPolicy"),
        ("tests/gateway-tls-backend-client-certificate.yaml",),
        (NamespacesReady(),
         RoutesAccepted(GatewayRef(_CLIENT_CERT), (NN(_CLIENT_CERT),), use_port=False),
         resolved(NN(_CLIENT_CERT), NN(_CLIENT_CERT)),
         # BackendTLSPolicyMustHaveAcceptedConditionTrue
         PolicyCondition(NN("gateway-tls-backend-client-certificate-test"), NN(_CLIENT_CERT),
                         Condition("Accepted", "True", "Accepted")),
         GatewayCondition(NN(_CLIENT_CERT), Condition("ResolvedRefs", "True", "ResolvedRefs")),
         Subtest("HTTP request sent to Service using TLS should succeed and the configured "
                 "client certificate should be presented.", (GatewayExchanges(
                     GatewayRef(_CLIENT_CERT), (ExpectedResponse(
                         request=Request(host="abc.example.com", path="/", sni="abc.example.com",
                                         client_cert="tls-checks-client-certificate"),
                         response=Response(status_codes=(200,)), namespace=INFRA),),
                     use_port=False),))),
        upstream_file="gateway-tls-backend-client-certificate.go"),
)
