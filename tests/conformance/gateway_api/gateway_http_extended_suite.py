"""GATEWAY-HTTP extended tests of the conformance suite (`conformance/tests/*.go` whose
features are within the profile but not all core), translated by hand into data, same shape as
gateway_http_suite.py. gateway_tests.NOT_TRANSLATED lists the extended tests not done here.
"""

from __future__ import annotations

from tests.conformance.gateway_api.expectations import (
    ExpectedResponse,
    RedirectRequest,
    Request,
    Response,
)
from tests.conformance.gateway_api.gateway_http_suite import accepted
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    SAME_NAMESPACE,
    GatewayConformanceTest,
    GatewayExchanges,
)
from tests.conformance.gateway_api.status import NN, GatewayRef, resolved

SAME = SAME_NAMESPACE.nn
TLS_CERT = NN("tls-validity-checks-certificate")


def redirect(path: str, status: int, *, method: str = "", host: str = "", scheme: str = "",
             to_host: str = "", port: str = "", to_path: str = "") -> ExpectedResponse:
    """A case whose answer is a redirect, not followed, checked by CompareRoundTrip's
    redirect rules (expectations.redirect_mismatch)."""
    return ExpectedResponse(
        request=Request(host=host, method=method, path=path, unfollow_redirect=True),
        response=Response(status_code=status),
        redirect_request=RedirectRequest(scheme=scheme, host=to_host, port=port, path=to_path),
        namespace=INFRA)


def on_same_namespace(short: str, description: str, features: tuple[str, ...], name: str,
                      route: str, cases: tuple[ExpectedResponse, ...], *,
                      provisional: bool = False) -> GatewayConformanceTest:
    """The commonest shape on the base Gateway same-namespace: route Accepted and ResolvedRefs,
    then the cases."""
    return GatewayConformanceTest(
        short, description, features, (f"tests/{name}.yaml",),
        (accepted(route), resolved(NN(route), SAME), GatewayExchanges(SAME_NAMESPACE, cases)),
        provisional=provisional, upstream_file=f"{name}.go")


def _status_redirect(code: int, path: str, method: str = "") -> GatewayConformanceTest:
    what = "redirect" if code == 303 else "path redirect"
    return on_same_namespace(
        f"HTTPRoute{code}Redirect", f"An HTTPRoute with a {code} {what} filter",
        ("Gateway", "HTTPRoute", f"HTTPRoute{code}RedirectStatusCode"),
        f"httproute-{code}-redirect", f"{code}-redirect",
        (redirect(path, code, method=method, to_path=path),), provisional=True)


_PORT_80 = GatewayRef("same-namespace")
_PORT_8080 = GatewayRef("same-namespace-with-http-listener-on-8080")
_PORT_443 = GatewayRef("same-namespace-with-https-listener")

GATEWAY_HTTP_EXTENDED_TESTS: tuple[GatewayConformanceTest, ...] = (
    _status_redirect(303, "/see-other", "POST"),
    _status_redirect(307, "/temporary"),
    _status_redirect(308, "/permanent"),
    on_same_namespace(
        "HTTPRouteRedirectPath",
        "An HTTPRoute with scheme redirect filter",
        ("Gateway", "HTTPRoute", "HTTPRoutePathRedirect"),
        "httproute-redirect-path", "redirect-path", (
            redirect("/original-prefix/lemon", 302, to_path="/replacement-prefix/lemon"),
            redirect("/full/path/original", 302, to_path="/full-path-replacement"),
            redirect("/path-and-host", 302, to_host="example.org",
                     to_path="/replacement-prefix"),
            redirect("/path-and-status", 301, to_path="/replacement-prefix"),
            redirect("/full-path-and-host", 302, to_host="example.org",
                     to_path="/replacement-full"),
            redirect("/full-path-and-status", 301, to_path="/replacement-full"))),
    on_same_namespace(
        "HTTPRouteRedirectPort",
        "An HTTPRoute with a port redirect filter",
        ("Gateway", "HTTPRoute", "HTTPRoutePortRedirect"),
        "httproute-redirect-port", "redirect-port", (
            redirect("/port", 302, port="8083"),
            redirect("/port-and-host", 302, to_host="example.org", port="8083"),
            redirect("/port-and-status", 301, port="8083"),
            redirect("/port-and-host-and-status", 302, port="8083", to_host="example.org"))),
    on_same_namespace(
        "HTTPRouteRedirectScheme",
        "An HTTPRoute with a scheme redirect filter",
        ("Gateway", "HTTPRoute", "HTTPRouteSchemeRedirect"),
        "httproute-redirect-scheme", "redirect-scheme", (
            redirect("/scheme", 302, scheme="https"),
            redirect("/scheme-and-host", 302, to_host="example.org", scheme="https"),
            redirect("/scheme-and-status", 301, scheme="https"),
            redirect("/scheme-and-host-and-status", 302, scheme="https", to_host="example.org"))),
    GatewayConformanceTest(
        "HTTPRouteRedirectPortAndScheme",
        "An HTTPRoute with port and scheme redirect filter",
        ("Gateway", "HTTPRoute", "HTTPRoutePortRedirect", "GatewayPort8080"),
        ("tests/httproute-redirect-port-and-scheme.yaml",),
        # An expected redirect with no port accepts the scheme's default port or none.
        (accepted("http-route-for-listener-on-port-80", _PORT_80),
         resolved(NN("http-route-for-listener-on-port-80"), _PORT_80.nn),
         accepted("http-route-for-listener-on-port-8080", _PORT_8080),
         resolved(NN("http-route-for-listener-on-port-8080"), _PORT_8080.nn),
         accepted("http-route-for-listener-on-port-443", _PORT_443),
         resolved(NN("http-route-for-listener-on-port-443"), _PORT_443.nn),
         GatewayExchanges(_PORT_80, (  # subtests "http-listener-on-80/<case>"
             redirect("/scheme-nil-and-port-nil", 302, scheme="http", to_host="example.org"),
             redirect("/scheme-nil-and-port-80", 302, scheme="http", to_host="example.org"),
             redirect("/scheme-nil-and-port-8080", 302, scheme="http", port="8080",
                      to_host="example.org"),
             redirect("/scheme-https-and-port-nil", 302, scheme="https", to_host="example.org"),
             redirect("/scheme-https-and-port-443", 302, scheme="https", to_host="example.org"),
             redirect("/scheme-https-and-port-8443", 302, scheme="https", port="8443",
                      to_host="example.org"))),
         GatewayExchanges(_PORT_8080, (  # "http-listener-on-8080/<case>"
             redirect("/scheme-nil-and-port-nil", 302, scheme="http", port="8080",
                      to_host="example.org"),
             redirect("/scheme-nil-and-port-80", 302, scheme="http", to_host="example.org"),
             redirect("/scheme-https-and-port-nil", 302, scheme="https",
                      to_host="example.org"))),
         GatewayExchanges(_PORT_443, (  # "https-listener-on-443/<case>", SNI example.org
             redirect("/scheme-nil-and-port-nil", 302, host="example.org", scheme="https",
                      to_host="example.org"),
             redirect("/scheme-nil-and-port-443", 302, host="example.org", scheme="https",
                      to_host="example.org"),
             redirect("/scheme-nil-and-port-8443", 302, host="example.org", scheme="https",
                      port="8443", to_host="example.org"),
             redirect("/scheme-http-and-port-nil", 302, host="example.org", scheme="http",
                      to_host="example.org"),
             redirect("/scheme-http-and-port-80", 302, host="example.org", scheme="http",
                      to_host="example.org"),
             redirect("/scheme-http-and-port-8080", 302, host="example.org", scheme="http",
                      port="8080", to_host="example.org")),
             scheme="https", server_cert=TLS_CERT)),
        upstream_file="httproute-redirect-port-and-scheme.go"),
)
