"""GATEWAY-TLS and GATEWAY-GRPC extended tests of the conformance suite: TLSRoute termination
modes (TLSRouteModeTerminate, TLSRouteModeMixed) and BackendTLSPolicy behind a TLSRoute or a
GRPCRoute, translated by hand from `conformance/tests/*.go` at the commit in
upstream/UPSTREAM."""

from __future__ import annotations

from tests.conformance.gateway_api.gateway_backend_tls_suite import ACCEPTED, RESOLVED, policy
from tests.conformance.gateway_api.gateway_grpc_suite import G1, grpc_accepted
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    SAME_NAMESPACE,
    GatewayConformanceTest,
    GatewayGRPCExchanges,
    GRPCCase,
    SkipIfSupported,
    Subtest,
    TLSStream,
)
from tests.conformance.gateway_api.gateway_tls_suite import tls_accepted
from tests.conformance.gateway_api.status import (
    NN,
    Condition,
    GatewayListeners,
    GatewayRef,
    ListenerStatus,
    NamespacesReady,
)

CA = NN("tls-checks-ca-certificate")
TLS_ACCEPTED = (Condition("Accepted", "True", "Accepted"),)
PROTOCOL_CONFLICT = (Condition("Accepted", "False", "ProtocolConflict"),)
_MIXED = "gateway-tlsroute-mixed-termination"

GATEWAY_TLS_GRPC_EXTENDED_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "TLSRouteListenerMixedTerminationNotSupported",
        "When TLSRoute mixed termination/passthrough listener is NOT supported, a "
        "Gateway Listener with 2 distinct TLS modes on the same port MUST have "
        "Accepted=False with Reason=ProtocolConflict",
        ("Gateway", "TLSRoute", "TLSRouteModeTerminate"),
        ("tests/tlsroute-listener-mixed-termination-not-supported.yaml",),
        (SkipIfSupported("TLSRouteModeMixed"),
         Subtest("Listener with unsupported mixed Terminate/Passthrough must have Accepted=False "
                 "with Reason=ProtocolConflict", (GatewayListeners(
                     NN("gateway-tlsroute-mixed-termination-not-supported"), (
                         ListenerStatus("tls-terminate", (), PROTOCOL_CONFLICT),
                         ListenerStatus("tls-passthrough", (), PROTOCOL_CONFLICT))),))),
        upstream_file="tlsroute-listener-mixed-termination-not-supported.go"),
    GatewayConformanceTest(
        "TLSRouteListenerTerminateSupportedKinds",
        "A Gateway Listener with TLS mode Terminate MUST include TLSRoute in "
        "SupportedKinds when termination is supported",
        ("Gateway", "TLSRoute", "TLSRouteModeTerminate"),
        ("tests/tlsroute-listener-terminate-supported-kinds.yaml",),
        (Subtest("Listener with mode Terminate must have TLSRoute in SupportedKinds", (
            GatewayListeners(NN("gateway-tlsroute-terminate-supported"), (
                ListenerStatus("tls-terminate", ("TLSRoute",), TLS_ACCEPTED),)),)),),
        upstream_file="tlsroute-listener-terminate-supported-kinds.go"),
    GatewayConformanceTest(
        "TLSRouteMixedTerminationSameNamespace",
        "A Gateway with 2 TLS Listeners on different modes, on the same port must "
        "route the traffic correctly",
        ("Gateway", "TLSRoute", "TLSRouteModeTerminate", "TLSRouteModeMixed"),
        ("tests/tlsroute-mixed-termination-same-namespace.yaml",),
        (NamespacesReady(),
         tls_accepted(_MIXED, "gateway-conformance-mixed-passthroughroute"),
         GatewayListeners(NN(_MIXED), (
             ListenerStatus("tls-terminate", ("TLSRoute",), TLS_ACCEPTED, 1),
             ListenerStatus("tls-passthrough", ("TLSRoute",), TLS_ACCEPTED, 1))),
         tls_accepted(_MIXED, "gateway-conformance-mixed-terminateroute"),
         # the routes' single hostnames: tls.example.com (terminate), abc.example.com
         Subtest("Simple TLS request matching terminated TLSRoute should reach tcp-backend "
                 "unencrypted", (TLSStream(GatewayRef(_MIXED), "tls.example.com", CA,
                                           "tcp-backend", backend_is_tls=False),)),
         Subtest("Simple TLS request matching TLSRoute Passthrough should reach infra-backend", (
             TLSStream(GatewayRef(_MIXED), "abc.example.com", CA, "tcp-backend",
                       hostname="abc.example.com"),))),
        provisional=True, upstream_file="tlsroute-mixed-termination-same-namespace.go"),
    GatewayConformanceTest(
        "TLSRouteTerminateSimpleSameNamespace",
        "A single TLSRoute in the gateway-conformance-infra namespace attaches to a "
        "Gateway using Terminate mode in the same namespace",
        ("Gateway", "TLSRoute", "TLSRouteModeTerminate"),
        ("tests/tlsroute-terminate-simple-same-namespace.yaml",),
        (NamespacesReady(), tls_accepted("gateway-tlsroute-terminate", "tlsroute-terminated-test"),
         Subtest("Simple TLS request matching terminated TLSRoute should reach tcp-backend with "
                 "plain text", (TLSStream(GatewayRef("gateway-tlsroute-terminate"),
                                          "tls.example.com", CA, "tcp-backend",
                                          backend_is_tls=False),))),
        provisional=True, upstream_file="tlsroute-terminate-simple-same-namespace.go"),
    GatewayConformanceTest(
        "BackendTLSPolicyTLSRouteTerminate",
        "A BackendTLSPolicy attached to a Service consumed by a TLSRoute using "
        "Terminate mode should re-encrypt traffic to the backend",
        ("Gateway", "TLSRoute", "TLSRouteModeTerminate", "BackendTLSPolicy"),
        ("tests/backendtlspolicy-tlsroute-terminate.yaml",),
        (NamespacesReady(),
         tls_accepted("gateway-btls-tlsroute-terminate", "backendtlspolicy-tlsroute-terminate"),
         *policy("btls-tlsroute-terminate-test", ACCEPTED, RESOLVED,
                 gateway=NN("gateway-btls-tlsroute-terminate")),
         # SNI tls.example.com (the route's hostname) at the Gateway; the backend, reached over
         # TLS again, reports abc.example.com (the policy's validation.hostname)
         Subtest("TLS request matching terminated TLSRoute with BackendTLSPolicy should reach "
                 "backend with re-encrypted TLS", (TLSStream(
                     GatewayRef("gateway-btls-tlsroute-terminate"), "tls.example.com", CA,
                     "tcp-backend", hostname="abc.example.com"),))),
        provisional=True, upstream_file="backendtlspolicy-tlsroute-terminate.go"),
    GatewayConformanceTest(
        "BackendTLSPolicyGRPCRoute",
        "A BackendTLSPolicy attached to a Service consumed by a GRPCRoute should "
        "configure TLS between gateway and backend", ("Gateway", "GRPCRoute", "BackendTLSPolicy"),
        ("tests/backendtlspolicy-grpcroute.yaml",),
        (NamespacesReady(), grpc_accepted(SAME_NAMESPACE, "backendtlspolicy-grpcroute"),
         Subtest("gRPC request sent to Service with valid BackendTLSPolicy should succeed", (
             *policy("grpc-normative-test", ACCEPTED, RESOLVED),
             GatewayGRPCExchanges(SAME_NAMESPACE, (GRPCCase(
                 authority="abc.example.com", backend=G1, namespace=INFRA),)))),
         Subtest("gRPC request sent to Service targeted by BackendTLSPolicy with mismatched "
                 "hostname should fail", (
                     *policy("grpc-host-mismatch", ACCEPTED, RESOLVED),
                     GatewayGRPCExchanges(SAME_NAMESPACE, (GRPCCase(
                         method="EchoTwo", authority="abc.example.com"),),
                         expect_failure=True))),
         Subtest("gRPC request sent to Service targeted by BackendTLSPolicy with mismatched cert "
                 "should fail", (
                     grpc_accepted(SAME_NAMESPACE, "backendtlspolicy-grpcroute-cert-mismatch"),
                     *policy("grpc-cert-mismatch", ACCEPTED, RESOLVED),
                     GatewayGRPCExchanges(SAME_NAMESPACE, (GRPCCase(
                         authority="cert-mismatch.example.com"),), expect_failure=True)))),
        upstream_file="backendtlspolicy-grpcroute.go"),
)
