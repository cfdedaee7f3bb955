"""The GATEWAY-GRPC core tests of the conformance suite (`conformance/tests/grpcroute-*.go` whose
features are Gateway and GRPCRoute; the Gateway-only ones are in gateway_suite.py), translated
by hand into data. The suite's gRPC client calls its echo service (EchoRequest, EchoTwoRequest,
EchoThreeRequest) with request metadata and authority, and reads which pod answered.
"""

from __future__ import annotations

from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    SAME_NAMESPACE,
    UNIMPLEMENTED,
    GatewayConformanceTest,
    GatewayGRPCExchanges,
    GatewayWeighted,
    GRPCCase,
    Subtest,
)
from tests.conformance.gateway_api.status import NN, GatewayRef, NamespacesReady, RoutesAccepted

CORE = ("Gateway", "GRPCRoute")
G1, G2, G3 = "grpc-infra-backend-v1", "grpc-infra-backend-v2", "grpc-infra-backend-v3"


def to(backend: str, *, method: str = "Echo", metadata: dict[str, str] | None = None,
       authority: str = "") -> GRPCCase:
    return GRPCCase(method=method, metadata=metadata or {}, authority=authority,
                    backend=backend, namespace=INFRA)


def unimplemented(*, method: str = "Echo", metadata: dict[str, str] | None = None,
                  authority: str = "") -> GRPCCase:
    return GRPCCase(method=method, metadata=metadata or {}, authority=authority,
                    code=UNIMPLEMENTED)


def grpc_accepted(gateway: GatewayRef, *routes: str) -> RoutesAccepted:
    """GatewayAndRoutesMustBeAccepted(..., &v1.GRPCRoute{}, true, routes...)."""
    return RoutesAccepted(gateway, tuple(NN(route) for route in routes), "GRPCRoute")


HOSTNAMES = GatewayRef("grpcroute-listener-hostname-matching")

GATEWAY_GRPC_CORE_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "GRPCExactMethodMatching",
        "A single GRPCRoute with exact method matching for different backends", CORE,
        ("tests/grpcroute-exact-method-matching.yaml",),
        (grpc_accepted(SAME_NAMESPACE, "exact-matching"),
         GatewayGRPCExchanges(SAME_NAMESPACE, (
             to(G1), to(G2, method="EchoTwo"), unimplemented(method="EchoThree")))),
        upstream_file="grpcroute-exact-method-matching.go"),
    GatewayConformanceTest(
        "GRPCRouteHeaderMatching",
        "A single GRPCRoute with header matching for different backends", CORE,
        ("tests/grpcroute-header-matching.yaml",),
        (grpc_accepted(SAME_NAMESPACE, "grpc-header-matching"),
         GatewayGRPCExchanges(SAME_NAMESPACE, (
             to(G1, metadata={"Version": "one"}), to(G2, metadata={"Version": "two"}),
             to(G1, metadata={"Version": "two", "Color": "orange"}),
             to(G2, metadata={"Version": "two", "Color": "blue"}),
             unimplemented(metadata={"Color": "orange"}),
             unimplemented(metadata={"Some-Other-Header": "one"}),
             to(G1, metadata={"Color": "blue"}), to(G1, metadata={"Color": "green"}),
             to(G2, metadata={"Color": "red"}), to(G2, metadata={"Color": "yellow"}),
             unimplemented(metadata={"Color": "purple"})))),
        upstream_file="grpcroute-header-matching.go"),
    GatewayConformanceTest(
        "GRPCRouteListenerHostnameMatching",
        "Multiple GRPC listeners with the same port and different hostnames, each with "
        "a different GRPCRoute", CORE,
        ("tests/grpcroute-listener-hostname-matching.yaml",),
        (NamespacesReady(),  # the manifest adds a Gateway in the infra namespace
         grpc_accepted(GatewayRef(HOSTNAMES.name, listeners=("listener-1",)), "backend-v1"),
         grpc_accepted(GatewayRef(HOSTNAMES.name, listeners=("listener-2",)), "backend-v2"),
         grpc_accepted(GatewayRef(HOSTNAMES.name, listeners=("listener-3", "listener-4")),
                       "backend-v3"),
         # the address of the last wait: listener-3's
         GatewayGRPCExchanges(GatewayRef(HOSTNAMES.name, listeners=("listener-3", "listener-4")), (
             to(G1, authority="bar.com"), to(G2, authority="foo.bar.com"),
             to(G3, authority="baz.bar.com"), to(G3, authority="boo.bar.com"),
             to(G3, authority="multiple.prefixes.bar.com"),
             to(G3, authority="multiple.prefixes.foo.com"),
             unimplemented(authority="foo.com"), unimplemented(authority="no.matching.host")))),
        upstream_file="grpcroute-listener-hostname-matching.go"),
    GatewayConformanceTest(
        "GRPCRouteWeight",
        "A GRPCRoute with weighted backends", CORE, ("tests/grpcroute-weight.yaml",),
        (grpc_accepted(SAME_NAMESPACE, "weighted-backends"),
         Subtest("Requests should have a distribution that matches the weight", (
             GatewayWeighted(SAME_NAMESPACE, GRPCCase(namespace=INFRA),
                             {G1: 0.7, G2: 0.3, G3: 0.0}),)),),
        upstream_file="grpcroute-weight.go"),
)
