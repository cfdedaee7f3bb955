"""Every translated gateway test, and the upstream gateway-profile tests not translated yet
with the reason: what a gateway runner iterates over, and what the report must list as not run.
"""

from __future__ import annotations

from tests.conformance.gateway_api.gateway_backend_tls_suite import GATEWAY_BACKEND_TLS_TESTS
from tests.conformance.gateway_api.gateway_extended_suite import GATEWAY_EXTENDED_TESTS
from tests.conformance.gateway_api.gateway_grpc_suite import GATEWAY_GRPC_CORE_TESTS
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
)

_LATER = "not translated yet (time): upstream test stays the reference"
# Upstream tests of GATEWAY-HTTP, GATEWAY-TLS or GATEWAY-GRPC not translated, and why.
NOT_TRANSLATED: dict[str, str] = {
    "HTTPRouteCORS": _LATER,
}
