"""HTTPRouteCORS (GATEWAY-HTTP extended, feature HTTPRouteCORS), translated by hand from
`conformance/tests/httproute-cors.go` at the commit in upstream/UPSTREAM, case for case.
Preflight (OPTIONS) answers come from the Gateway, not the echo backend: upstream leaves the
expected request's host, path and headers empty and sets only its method, and no namespace."""

from __future__ import annotations

from collections.abc import Mapping

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
)
from tests.conformance.gateway_api.status import NN, RoutesAccepted, resolved

ALLOW_ORIGIN = "access-control-allow-origin"
ALLOW_METHODS = "access-control-allow-methods"
ALLOW_HEADERS = "access-control-allow-headers"
ALLOW_CREDENTIALS = "access-control-allow-credentials"
REQUEST_METHOD = "access-control-request-method"
REQUEST_HEADERS = "access-control-request-headers"
BOTH_ORDERS = ("x-header-1, x-header-2", "x-header-2, x-header-1")


def preflight(name: str, path: str, headers: Mapping[str, str], *,
              valid: Mapping[str, tuple[str, ...]] = {}, exact: Mapping[str, str] = {},
              absent: tuple[str, ...] = (), statuses: tuple[int, ...] = (200, 204),
              ignore_whitespace: bool = False) -> ExpectedResponse:
    return ExpectedResponse(
        test_case_name=name, request=Request(path=path, method="OPTIONS", headers=dict(headers)),
        expected_request=ExpectedRequest(method="OPTIONS"),
        response=Response(status_codes=statuses, headers=dict(exact),
                          valid_header_values=dict(valid), absent_headers=absent,
                          ignore_whitespace=ignore_whitespace))


def simple(name: str, path: str, method: str, headers: Mapping[str, str], *, status: int = 0,
           exact: Mapping[str, str] = {}, valid: Mapping[str, tuple[str, ...]] = {},
           absent: tuple[str, ...] = ()) -> ExpectedResponse:
    return ExpectedResponse(
        test_case_name=name, namespace=INFRA,
        request=Request(path=path, method=method, headers=dict(headers)),
        response=Response(status_code=status, headers=dict(exact),
                          valid_header_values=dict(valid), absent_headers=absent))


def _allowed_preflight(name: str, origin: str) -> ExpectedResponse:
    return preflight(name, "/cors-1", {"Origin": origin, REQUEST_METHOD: "GET",
                                       REQUEST_HEADERS: "x-header-1, x-header-2"},
                     valid={ALLOW_ORIGIN: (origin,),
                            ALLOW_METHODS: ("GET, OPTIONS", "OPTIONS, GET"),
                            ALLOW_HEADERS: BOTH_ORDERS,
                            "access-control-expose-headers": ("x-header-3, x-header-4",
                                                              "x-header-4, x-header-3"),
                            "access-control-max-age": ("3600",), ALLOW_CREDENTIALS: ("true",)},
                     ignore_whitespace=True)


_SIMPLE_HEADERS = {REQUEST_METHOD: "GET", REQUEST_HEADERS: "x-header-1, x-header-2"}
_ROUTES = tuple(NN(name) for name in (
    "cors-multiple-origins-methods-headers", "cors-wildcard-methods", "cors-wildcard-origin",
    "cors-wildcard-methods-headers"))

_CASES = (
    _allowed_preflight("CORS preflight request from an exact matching origin should be allowed",
                       "https://www.foo.com"),
    _allowed_preflight("CORS preflight request from a wildcard matching origin should be "
                       "allowed", "https://www.bar.com"),
    _allowed_preflight("CORS preflight request from a wildcard matching any number of periods "
                       "left to '*' should be allowed", "https://xpto.www.bar.com"),
    preflight("CORS preflight request from a non-matching origin should not be allowed",
              "/cors-1", {"Origin": "https://foobar.com", REQUEST_METHOD: "GET"},
              statuses=(200, 204, 403), absent=(ALLOW_ORIGIN,)),
    simple("Simple request from an exact matching origin should be allowed", "/cors-1", "GET",
           {"Origin": "https://www.foo.com", **_SIMPLE_HEADERS}, status=200,
           exact={ALLOW_ORIGIN: "https://www.foo.com"}),
    simple("Simple request from a wildcard matching origin should be allowed", "/cors-1", "GET",
           {"Origin": "https://www.bar.com", **_SIMPLE_HEADERS}, status=200,
           exact={ALLOW_ORIGIN: "https://www.bar.com"}),
    simple("Simple request from a non-matching origin should not be allowed", "/cors-1", "GET",
           {"Origin": "https://foobar.com", REQUEST_METHOD: "GET"}, absent=(ALLOW_ORIGIN,)),
    preflight("CORS preflight request with POST method should be allowed by allowMethods with "
              "wildcard", "/cors-2", {"Origin": "https://www.foo.com", REQUEST_METHOD: "POST"},
              valid={ALLOW_METHODS: ("POST", "*")}, exact={ALLOW_ORIGIN: "https://www.foo.com"},
              absent=(ALLOW_CREDENTIALS,)),
    preflight("CORS preflight request should not receive access-control-allow-credentials "
              "header without access-control-allow-credentials set to true", "/cors-2",
              {"Origin": "https://www.foo.com", REQUEST_METHOD: "POST"},
              absent=("Access-Control-Allow-Credentials",)),
    *(preflight(f"CORS preflight request from a wildcard origin{port_words} should return "
                "header with '*' or with the requested Origin", "/cors-wildcard-origin",
                {"Origin": origin, REQUEST_METHOD: "PUT"},
                valid={ALLOW_ORIGIN: (origin, "*"), ALLOW_METHODS: ("PUT",)},
                absent=("Access-Control-Allow-Credentials",))
      for port_words, origin in (("", "https://foobar.com"),
                                 (" containing a port", "https://foobar.com:12345"))),
    simple("Request from a wildcard origin containing a port should return header with '*' or "
           "with the requested Origin", "/cors-wildcard-origin", "PUT",
           {"Origin": "https://foobar.com:12345"}, status=200,
           valid={ALLOW_ORIGIN: ("https://foobar.com:12345", "*")}),
    simple("Simple request from a wildcard origin should return header with '*' or with the "
           "requested Origin", "/cors-wildcard-origin", "PUT", {"Origin": "https://foobar.com"},
           status=200, valid={ALLOW_ORIGIN: ("https://foobar.com", "*")},
           absent=("Access-Control-Allow-Credentials",)),
    preflight("CORS preflight request requesting specific method and headers should be allowed "
              "and always echo the origin with allowCredentials set to true",
              "/cors-wildcard-methods-headers",
              {"Origin": "https://other.foo.com", REQUEST_METHOD: "PUT",
               REQUEST_HEADERS: "x-header-1, x-header-2"},
              valid={ALLOW_ORIGIN: ("https://other.foo.com",), ALLOW_METHODS: ("PUT",),
                     ALLOW_HEADERS: BOTH_ORDERS, ALLOW_CREDENTIALS: ("true",)},
              ignore_whitespace=True),
    preflight("CORS preflight request requesting specific method and headers should hide "
              "access-control-allow-credentials headers with allowCredentials set to false",
              "/cors-wildcard-methods-headers-unauth",
              {"Origin": "https://other.foo.com", REQUEST_METHOD: "PUT",
               REQUEST_HEADERS: "x-header-1, x-header-2"},
              valid={ALLOW_ORIGIN: ("https://other.foo.com", "*"), ALLOW_METHODS: ("PUT", "*"),
                     ALLOW_HEADERS: (*BOTH_ORDERS, "*")},
              absent=(ALLOW_CREDENTIALS,), ignore_whitespace=True),
    simple("CORS request should receive access-control-allow-credentials header with "
           "allowCredentials set to true", "/cors-wildcard-methods-headers", "GET",
           {"Origin": "https://other.foo.com"}, status=200,
           valid={ALLOW_ORIGIN: ("https://other.foo.com",), ALLOW_CREDENTIALS: ("true",)}),
    simple("CORS request should not receive access-control-allow-credentials header without "
           "allowCredentials set to true", "/cors-wildcard-methods-headers-unauth", "GET",
           {"Origin": "https://other.foo.com"}, status=200,
           valid={ALLOW_ORIGIN: ("https://other.foo.com", "*")}, absent=(ALLOW_CREDENTIALS,)),
)

GATEWAY_HTTP_CORS_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "HTTPRouteCORS",
        "An HTTPRoute with CORS filter should allow CORS requests from specified "
        "origins", ("Gateway", "HTTPRoute", "HTTPRouteCORS"),
        ("tests/httproute-cors.yaml",),
        # the Go test waits for the first two routes only, then ResolvedRefs on all four
        (RoutesAccepted(SAME_NAMESPACE, _ROUTES[:2]),
         *(resolved(route, SAME_NAMESPACE.nn) for route in _ROUTES),
         GatewayExchanges(SAME_NAMESPACE, _CASES)),
        upstream_file="httproute-cors.go"),
)
