"""The GATEWAY-TLS core tests of the conformance suite (`conformance/tests/tlsroute-*.go` whose
features are Gateway, TLSRoute and ReferenceGrant; the Gateway-only ones are in
gateway_suite.py), translated by hand into data. TLSRoutes are v1alpha2 passthrough routes: the
client connects with an SNI and either reaches a TLS backend or has its handshake refused.
"""

from __future__ import annotations

from tests.conformance.gateway_api.expectations import ExpectedResponse, Request
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    GatewayConformanceTest,
    SkipIfSupported,
    Subtest,
    TLSExchange,
    TLSRejected,
    TLSStream,
)
from tests.conformance.gateway_api.status import (
    NN,
    Condition,
    GatewayListeners,
    GatewayRef,
    GatewayZeroRoutes,
    ListenerStatus,
    NamespacesReady,
    RouteCondition,
    RouteNoAcceptedParents,
    RoutesAccepted,
    resolved,
)

CORE = ("Gateway", "TLSRoute")
CERT = NN("tls-checks-certificate")  # the Secret whose certificate the client trusts


def tls_accepted(gateway: str, *routes: str) -> RoutesAccepted:
    """GatewayAndTLSRoutesMustBeAccepted (it also returns the routes' hostnames; the steps below
    write the one the Go test takes, hostnames[0], from the manifest)."""
    return RoutesAccepted(GatewayRef(gateway), tuple(NN(route) for route in routes), "TLSRoute",
                          listeners_ready=False)


def _reaches(gateway: str, host: str, backend: str) -> TLSExchange:
    return TLSExchange(GatewayRef(gateway), host, CERT, ExpectedResponse(
        request=Request(host=host, path="/"), backend=backend, namespace=INFRA))


def _intersection(subtest: str, gateway: str, routes: tuple[str, ...],
                  rejected: str) -> Subtest:
    """TLSRouteHostnameIntersection's subtests but the first: abc.example.com reaches
    tls-backend, other.example.com tls-backend-2, a foreign name is refused."""
    return Subtest(subtest, (
        tls_accepted(gateway, *routes),
        *(resolved(NN(route), NN(gateway), "TLSRoute") for route in routes),
        Subtest("TLS request matching exact hostnames intersection should reach backend", (
            _reaches(gateway, "abc.example.com", "tls-backend"),)),
        Subtest("TLS request matching wildcard hostnames intersection should reach backend 2", (
            _reaches(gateway, "other.example.com", "tls-backend-2"),)),
        Subtest("TLS request not matching hostnames intersection should not reach backend", (
            TLSRejected(GatewayRef(gateway), rejected),))))


def _unresolved(short: str, description: str, name: str, route: str, gateway: str, reason: str,
                subtests: tuple[str, str]) -> GatewayConformanceTest:
    """A TLSRoute whose only backendRef does not resolve: Accepted, ResolvedRefs=False with the
    reason, and a handshake for its hostname (hostnames[0]: example.com) refused."""
    return GatewayConformanceTest(
        short, description, CORE, (f"tests/{name}.yaml",),
        (NamespacesReady(), tls_accepted(gateway, route),
         Subtest(subtests[0], (RouteCondition(NN(route), NN(gateway),
                                              Condition("ResolvedRefs", "False", reason),
                                              "TLSRoute"),)),
         Subtest(subtests[1], (TLSRejected(GatewayRef(gateway), "example.com"),))),
        upstream_file=f"{name}.go")


_NOT_ALLOWED = Condition("Accepted", "False", "NotAllowedByListeners")
_NO_HOSTNAME = Condition("Accepted", "False", "NoMatchingListenerHostname")

GATEWAY_TLS_CORE_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "TLSRouteHostnameIntersection",
        "TLSRoutes should attach to listeners only if they have intersecting "
        "hostnames, and should accept requests only for the intersecting hostnames",
        CORE, ("tests/tlsroute-hostname-intersection.yaml",),
        # the Go test reads Secret tls-checks-certificate's certificate first (must be there)
        (NamespacesReady(),
         Subtest("TLSRoutes intersect with exact listener hostname", (
             tls_accepted("gw-tlsroute-exact-hostname-x-1",
                          "tlsroute-more-specific-wc-hostname-x-1"),
             resolved(NN("tlsroute-more-specific-wc-hostname-x-1"),
                      NN("gw-tlsroute-exact-hostname-x-1"), "TLSRoute"),
             Subtest("TLS request matching exact hostnames intersection should reach backend", (
                 _reaches("gw-tlsroute-exact-hostname-x-1", "abc.example.com", "tls-backend"),)),
             Subtest("TLS request not matching hostnames intersection should not reach "
                     "backend", (TLSRejected(GatewayRef("gw-tlsroute-exact-hostname-x-1"),
                                             "non.matching.com"),)))),
         _intersection("TLSRoutes intersect with more specific wildcard listener hostname",
                       "gw-tlsroute-more-specific-wc-hostname-x-2",
                       ("tlsroute-exact-hostname-x-2", "tlsroute-less-specific-wc-hostname-x-2"),
                       "non.matching.com"),
         _intersection("TLSRoutes intersect with less specific wildcard listener hostname",
                       "gw-tlsroute-less-specific-wc-hostname-x-3",
                       ("tlsroute-exact-hostname-x-3", "tlsroute-more-specific-wc-hostname-x-3"),
                       "non.matching.com"),
         _intersection("TLSRoutes intersect with empty listener hostname",
                       "gw-tlsroute-empty-hostname-x-4",
                       ("tlsroute-exact-hostname-x-4", "tlsroute-less-specific-wc-hostname-x-4"),
                       "non.matching.org")),
        upstream_file="tlsroute-hostname-intersection.go"),
    _unresolved("TLSRouteInvalidBackendRefNonexistent",
                "A single TLSRoute in the gateway-conformance-infra namespace has a "
                "ResolvedRefs status False with reason BackendNotFound when binding to a "
                "Gateway in the same namespace, if the route has a BackendRef Service that "
                "does not exist",
                "tlsroute-invalid-backendref-nonexistent",
                "invalid-backend-ref-nonexistent",
                "gateway-tlsroute-invalid-backend-ref-nonexistent", "BackendNotFound",
                ("TLSRoute with only a nonexistent BackendRef has a ResolvedRefs Condition with "
                 "status False and Reason BackendNotFound",
                 "TLS connection to nonexistent backend should be rejected")),
    _unresolved("TLSRouteInvalidBackendRefUnknownKind",
                "A single TLSRoute in the gateway-conformance-infra namespace should set a "
                "ResolvedRefs status False with reason InvalidKind when attempting to bind to "
                "a Gateway in the same namespace if the route has a BackendRef that points to "
                "an unknown Kind.",
                "tlsroute-invalid-backendref-unknown-kind", "invalid-backend-ref-unknown-kind",
                "gateway-tlsroute-invalid-backend-ref-unknown-kind", "InvalidKind",
                ("TLSRoute with Invalid Kind has a ResolvedRefs Condition with status False and "
                 "Reason InvalidKind",
                 "TLS connection to invalid backend with invalid Kind should be rejected")),
    GatewayConformanceTest(
        "TLSRouteInvalidNoMatchingListenerHostname",
        "A TLSRoute with a hostname that does not match the Gateway listener hostname "
        "should set Accepted=False with Reason=NoMatchingListenerHostname", CORE,
        ("tests/tlsroute-invalid-no-matching-listener-hostname.yaml",),
        (NamespacesReady(),
         Subtest("TLSRoute 1 has Accepted=False for exact hostname Gateway", (RouteCondition(
             NN("tlsroute-hostname-mismatch-1"), NN("gateway-tls-exact-hostname"), _NO_HOSTNAME,
             "TLSRoute"),)),
         Subtest("TLSRoute 2 has Accepted=False for wildcard hostname Gateway", (RouteCondition(
             NN("tlsroute-hostname-mismatch-2"), NN("gateway-tls-wildcard-hostname"),
             _NO_HOSTNAME, "TLSRoute"),)),
         Subtest("TLSRoute 1 must have no accepted parents", (
             RouteNoAcceptedParents(NN("tlsroute-hostname-mismatch-1"), "TLSRoute"),)),
         Subtest("TLSRoute 2 must have no accepted parents", (
             RouteNoAcceptedParents(NN("tlsroute-hostname-mismatch-2"), "TLSRoute"),)),
         Subtest("Exact hostname Gateway must have 0 Routes attached", (
             GatewayZeroRoutes(NN("gateway-tls-exact-hostname")),)),
         Subtest("Wildcard hostname Gateway must have 0 Routes attached", (
             GatewayZeroRoutes(NN("gateway-tls-wildcard-hostname")),))),
        upstream_file="tlsroute-invalid-no-matching-listener-hostname.go"),
    GatewayConformanceTest(
        "TLSRouteInvalidNoMatchingListener",
        "A TLSRoute should set Accepted=False when attaching to a Gateway with no "
        "compatible TLS listener", CORE,
        ("tests/tlsroute-invalid-no-matching-listener.yaml",),
        (NamespacesReady(),
         Subtest("TLSRoute rejected when listener protocol is HTTP", (RouteCondition(
             NN("tlsroute-not-allowed-protocol-http"), NN("gateway-tlsroute-http-only"),
             _NOT_ALLOWED, "TLSRoute"),)),
         Subtest("TLSRoute rejected when listener protocol is HTTPS", (RouteCondition(
             NN("tlsroute-not-allowed-protocol-https"), NN("gateway-tlsroute-https-only"),
             _NOT_ALLOWED, "TLSRoute"),)),
         Subtest("TLSRoute rejected when sectionName not found", (RouteCondition(
             NN("tlsroute-no-matching-section-name"),
             NN("gateway-tlsroute-tls-passthrough-only"),
             Condition("Accepted", "False", "NoMatchingParent"), "TLSRoute"),)),
         Subtest("TLSRoute (HTTP listener) should not have Parents accepted", (
             RouteNoAcceptedParents(NN("tlsroute-not-allowed-protocol-http"), "TLSRoute"),)),
         Subtest("TLSRoute (HTTPS listener) should not have Parents accepted", (
             RouteNoAcceptedParents(NN("tlsroute-not-allowed-protocol-https"), "TLSRoute"),)),
         Subtest("TLSRoute (wrong sectionName) should not have Parents accepted", (
             RouteNoAcceptedParents(NN("tlsroute-no-matching-section-name"), "TLSRoute"),)),
         Subtest("Gateway HTTP-only should have 0 Routes attached", (
             GatewayZeroRoutes(NN("gateway-tlsroute-http-only")),)),
         Subtest("Gateway HTTPS-only should have 0 Routes attached", (
             GatewayZeroRoutes(NN("gateway-tlsroute-https-only")),))),
        upstream_file="tlsroute-invalid-no-matching-listener.go"),
    GatewayConformanceTest(
        "TLSRouteInvalidReferenceGrant",
        "A single TLSRoute in the gateway-conformance-infra namespace, with a "
        "backendRef in another namespace without valid ReferenceGrant, should have the "
        "ResolvedRefs condition set to False", ("Gateway", "TLSRoute", "ReferenceGrant"),
        ("tests/tlsroute-invalid-reference-grant.yaml",),
        (tls_accepted("gateway-tlsroute-referencegrant", "gateway-conformance-infra-test"),
         Subtest("TLSRoute with BackendRef in another namespace and no ReferenceGrant covering "
                 "the Service has a ResolvedRefs Condition with status False and Reason "
                 "RefNotPermitted", (RouteCondition(
                     NN("gateway-conformance-infra-test"), NN("gateway-tlsroute-referencegrant"),
                     Condition("ResolvedRefs", "False", "RefNotPermitted"), "TLSRoute"),))),
        upstream_file="tlsroute-invalid-reference-grant.go"),
    GatewayConformanceTest(
        "TLSRouteListenerPassthroughSupportedKinds",
        "A Gateway Listener with TLS mode Passthrough MUST include TLSRoute in "
        "SupportedKinds", CORE,
        ("tests/tlsroute-listener-passthrough-supported-kinds.yaml",),
        (Subtest("TLS listener should have a false ResolvedRefs condition with reason "
                 "InvalidRouteKinds for TCPRoute, and TLSRoute must be put in the "
                 "supportedKinds", (GatewayListeners(
                     NN("gateway-tlsroute-passthrough-supported-kind"), (ListenerStatus(
                         "tls-passthrough", ("TLSRoute",),
                         (Condition("ResolvedRefs", "False", "InvalidRouteKinds"),)),)),)),),
        upstream_file="tlsroute-listener-passthrough-supported-kinds.go"),
    GatewayConformanceTest(
        "TLSRouteListenerTerminateNotSupported",
        "When TLSRoute termination is NOT supported, a Gateway Listener with TLS mode "
        "Terminate MUST have Accepted=False with Reason=UnsupportedValue", CORE,
        ("tests/tlsroute-listener-terminate-not-supported.yaml",),
        (SkipIfSupported("TLSRouteModeTerminate"),
         Subtest("Listener with unsupported mode Terminate must have Accepted=False with "
                 "Reason=UnsupportedValue", (GatewayListeners(
                     NN("gateway-tlsroute-terminate-unsupported"), (ListenerStatus(
                         "tls-terminate", (),
                         (Condition("Accepted", "False", "UnsupportedValue"),)),)),))),
        upstream_file="tlsroute-listener-terminate-not-supported.go"),
    GatewayConformanceTest(
        "TLSRouteSimpleSameNamespace",
        "A single TLSRoute in the gateway-conformance-infra namespace attaches to a "
        "Gateway in the same namespace", CORE, ("tests/tlsroute-simple-same-namespace.yaml",),
        # the Go test requires exactly one hostname on the route (abc.example.com) and reads
        # the CA from ConfigMap tls-checks-ca-certificate, key ca.crt
        (NamespacesReady(),
         tls_accepted("gateway-tlsroute", "gateway-conformance-infra-test"),
         Subtest("Simple TLS request matching TLSRoute should reach infra-backend", (
             TLSStream(GatewayRef("gateway-tlsroute"), "abc.example.com",
                       NN("tls-checks-ca-certificate"), "tcp-backend",
                       hostname="abc.example.com"),))),
        upstream_file="tlsroute-simple-same-namespace.go"),
)
