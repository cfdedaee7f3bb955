"""Every translated gateway test, and the upstream gateway-profile tests not translated yet
with the reason: what a gateway runner iterates over, and what the report must list as not run.
"""

from __future__ import annotations

from tests.conformance.gateway_api.gateway_backend_tls_suite import GATEWAY_BACKEND_TLS_TESTS
from tests.conformance.gateway_api.gateway_extended_suite import GATEWAY_EXTENDED_TESTS
from tests.conformance.gateway_api.gateway_grpc_suite import GATEWAY_GRPC_CORE_TESTS
from tests.conformance.gateway_api.gateway_http_cors import GATEWAY_HTTP_CORS_TESTS
from tests.conformance.gateway_api.gateway_http_extended_listeners import (
    GATEWAY_HTTP_LISTENER_TESTS,
)
from tests.conformance.gateway_api.gateway_http_extended_suite import GATEWAY_HTTP_EXTENDED_TESTS
from tests.conformance.gateway_api.gateway_http_suite import GATEWAY_HTTP_CORE_TESTS
from tests.conformance.gateway_api.gateway_listenerset_suite import GATEWAY_LISTENERSET_TESTS
from tests.conformance.gateway_api.gateway_steps import GatewayConformanceTest
from tests.conformance.gateway_api.gateway_suite import GATEWAY_TESTS
from tests.conformance.gateway_api.gateway_tls_grpc_extended_suite import (
    GATEWAY_TLS_GRPC_EXTENDED_TESTS,
)
from tests.conformance.gateway_api.gateway_tls_suite import GATEWAY_TLS_CORE_TESTS

GATEWAY_CONFORMANCE_TESTS: tuple[GatewayConformanceTest, ...] = (
    *GATEWAY_TESTS,
    *GATEWAY_HTTP_CORE_TESTS,
    *GATEWAY_HTTP_LISTENER_TESTS,
    *GATEWAY_HTTP_EXTENDED_TESTS,
    *GATEWAY_TLS_CORE_TESTS,
    *GATEWAY_GRPC_CORE_TESTS,
    *GATEWAY_BACKEND_TLS_TESTS,
    *GATEWAY_TLS_GRPC_EXTENDED_TESTS,
    *GATEWAY_EXTENDED_TESTS,
    *GATEWAY_LISTENERSET_TESTS,
    *GATEWAY_HTTP_CORS_TESTS,
)

# Upstream tests of GATEWAY-HTTP, GATEWAY-TLS or GATEWAY-GRPC not translated, and why: none
# (every test of the three profiles, core and extended, is translated).
NOT_TRANSLATED: dict[str, str] = {}

# Upstream gateway tests that count in none of these three profiles (getConformanceProfiles-
# ForTest: their features are not all within one profile's core and extended sets), not
# translated here, with the reason.
_TCP = "GATEWAY-TCP profile (TCPRoute): not asked for"
_UDP = "GATEWAY-UDP profile (UDPRoute): not asked for"
OUTSIDE_PROFILES: dict[str, str] = {
    "GRPCRouteNamedRule": "GRPCRouteNamedRouteRule is in no gateway profile's feature sets "
                          "(GATEWAY-GRPC extended takes no GRPCRoute feature at this commit)",
    "GRPCRouteRequestHeaderModifier": "GRPCRouteRequestHeaderModifier is in no gateway "
                                      "profile's feature sets (same reason)",
    "HTTPRouteDisallowedKind": "needs HTTPRoute and TLSRoute together: no single profile has "
                               "both",
    **dict.fromkeys((
        "TCPRouteInvalidBackendRefNonexistent", "TCPRouteInvalidCrossNamespaceBackendRef",
        "TCPRouteInvalidNonTCPListener", "TCPRouteMultipleRoutesAttachment",
        "TCPRouteParentRefAttachAll", "TCPRouteParentRefPortAndSectionName",
        "TCPRouteReferenceGrant", "TCPRouteWeightedRouting"), _TCP),
    **dict.fromkeys((
        "UDPRoute", "UDPRouteInvalidBackendRefNonexistent",
        "UDPRouteInvalidCrossNamespaceBackendRef", "UDPRouteMultipleRoutesAttachment",
        "UDPRouteNotAllowedByListeners", "UDPRouteParentRefAttachAllListeners",
        "UDPRouteParentRefPortAndSectionName", "UDPRouteReferenceGrant",
        "UDPRouteWeightedRouting"), _UDP),
}
