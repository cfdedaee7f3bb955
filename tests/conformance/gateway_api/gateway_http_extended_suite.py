"""GATEWAY-HTTP extended tests of the conformance suite (`conformance/tests/*.go` whose
features are within the profile but not all core), translated by hand into data, same shape as
gateway_http_suite.py. gateway_tests.NOT_TRANSLATED lists the extended tests not done here.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.conformance.gateway_api.expectations import (
    ExpectedRequest,
    ExpectedResponse,
    RedirectRequest,
    Request,
    Response,
)
from tests.conformance.gateway_api.gateway_http_suite import (
    GATEWAY_HTTP_CORE_TESTS,
    accepted,
    code,
    to,
)
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    SAME_NAMESPACE,
    V1,
    V2,
    V3,
    BackendHeaderNamesPod,
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


def saw(path: str, backend: str, seen_path: str, *, host: str = "", seen_host: str = "",
        headers: Mapping[str, str] = {}, seen_headers: Mapping[str, str] = {},
        absent: tuple[str, ...] = ()) -> ExpectedResponse:
    """A case whose ExpectedRequest says what the backend must have seen (path, host, headers
    present and absent)."""
    return ExpectedResponse(
        request=Request(host=host, path=path, headers=dict(headers)),
        expected_request=ExpectedRequest(host=seen_host, path=seen_path,
                                         headers=dict(seen_headers), absent_headers=absent),
        backend=backend, namespace=INFRA)


_MODIFIED = {"X-Header-Add": "header-val-1", "X-Header-Add-Append": "append-val-1,header-val-2",
             "X-Header-Set": "set-overwrites-values"}
_TO_MODIFY = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1",
              "X-Header-Set": "set-val"}

def answer(path: str, backend_sets: Mapping[str, str], headers: Mapping[str, str] = {},
           absent: tuple[str, ...] = ()) -> ExpectedResponse:
    """A response-header case: the echo backend sets `backend_sets` on its answer, the client
    must see `headers` and not `absent`."""
    return ExpectedResponse(
        request=Request(path=path), backend_set_response_headers=dict(backend_sets),
        response=Response(headers=dict(headers), absent_headers=absent), backend=V1,
        namespace=INFRA)


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
    on_same_namespace(
        "HTTPRouteRewriteHost",
        "An HTTPRoute with hostname rewrite filter",
        ("Gateway", "HTTPRoute", "HTTPRouteHostRewrite"),
        "httproute-rewrite-host", "rewrite-host", (
            saw("/one", V1, "/one", host="rewrite.example", seen_host="one.example.org"),
            saw("/two", V2, "/two", host="rewrite.example", seen_host="example.org"),
            saw("/rewrite-host-and-modify-headers", V2, "/rewrite-host-and-modify-headers",
                host="rewrite.example", seen_host="test.example.org",
                headers={"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"},
                seen_headers=_MODIFIED, absent=("X-Header-Remove",)))),
    on_same_namespace(
        "HTTPRouteRewritePath",
        "An HTTPRoute with path rewrite filter", ("Gateway", "HTTPRoute", "HTTPRoutePathRewrite"),
        "httproute-rewrite-path", "rewrite-path", (
            saw("/prefix/one/two", V1, "/one/two"),
            saw("/strip-prefix/three", V1, "/three"),
            saw("/strip-prefix", V1, "/"),
            saw("/full/one/two", V1, "/one"),
            saw("/full/rewrite-path-and-modify-headers/test", V1, "/test", headers=_TO_MODIFY,
                seen_headers=_MODIFIED, absent=("X-Header-Remove",)),
            saw("/prefix/rewrite-path-and-modify-headers/one", V1, "/prefix/one",
                headers=_TO_MODIFY, seen_headers=_MODIFIED, absent=("X-Header-Remove",)))),
    on_same_namespace(
        "HTTPRouteQueryParamMatching",
        "A single HTTPRoute with query param matching for different backends",
        ("Gateway", "HTTPRoute", "HTTPRouteQueryParamMatching"),
        "httproute-query-param-matching", "query-param-matching", (
            to("/?animal=whale", V1), to("/?animal=dolphin", V2),
            to("/?animal=dolphin&color=blue", V3), to("/?ANIMAL=Whale", V3),
            to("/?animal=whale&otherparam=irrelevant", V1),
            to("/?animal=dolphin&color=yellow", V2),
            code("/?color=blue", 404), code("/?animal=dog", 404),
            code("/?animal=whaledolphin", 404), code("/", 404),
            # combined with other core matches
            to("/path1?animal=whale", V1),
            to("/?animal=whale", V2, headers={"version": "one"}),
            to("/path2?animal=whale", V3, headers={"version": "two"}),
            # ORed matches match with only one of them
            to("/path3?animal=shark", V1),
            to("/path4?animal=kraken", V1, headers={"version": "three"}),
            # ANDed match types do not match with a subset
            code("/?animal=shark", 404), code("/path4?animal=kraken", 404),
            # precedence among several matching rules
            to("/path5?animal=hydra", V1),
            to("/?animal=hydra", V3, headers={"version": "four"}))),
    on_same_namespace(
        "HTTPRouteMethodMatching",
        "A single HTTPRoute with method matching for different backends",
        ("Gateway", "HTTPRoute", "HTTPRouteMethodMatching"),
        "httproute-method-matching", "method-matching", (
            to("/", V1, method="POST"), to("/", V2, method="GET"),
            code("/", 404, method="HEAD"),
            # combined with other core matches
            to("/path1", V1, method="GET"),
            to("/", V2, method="PUT", headers={"version": "one"}),
            to("/path2", V3, method="POST", headers={"version": "two"}),
            # ORed matches match with only one of them
            to("/path3", V1, method="PATCH"),
            to("/path4", V1, method="DELETE", headers={"version": "three"}),
            # ANDed match types do not match with a subset
            code("/", 404, method="PUT"), code("/path4", 404, method="DELETE"),
            # precedence among several matching rules
            to("/path5", V1, method="PATCH"),
            to("/", V2, method="PATCH", headers={"version": "four"}))),
    on_same_namespace(
        "HTTPRouteResponseHeaderModifier",
        "An HTTPRoute has response header modifier filters applied correctly",
        ("Gateway", "HTTPRoute", "HTTPRouteResponseHeaderModification"),
        "httproute-response-header-modifier", "response-header-modifier", (
            answer("/set", {"Some-Other-Header": "val"},
                   {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
            answer("/set", {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
                   {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
            answer("/add", {"Some-Other-Header": "val"},
                   {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}),
            answer("/add", {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
                   {"Some-Other-Header": "val",
                    "X-Header-Add": "some-other-value,add-appends-values"}),
            answer("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
            answer("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                                 "X-Header-Remove-2": "remove-val-2",
                                 "Another-Header": "another-header-val",
                                 "X-Header-Remove-1": "val"},
                   {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                    "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
                    "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val"},
                   ("X-Header-Remove-1", "X-Header-Remove-2")),
            answer("/case-insensitivity", {"x-header-set": "original-val-set",
                                           "x-header-add": "original-val-add",
                                           "x-header-remove": "original-val-remove",
                                           "Another-Header": "another-header-val"},
                   {"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
                    "X-Lowercase-Add": "lowercase-add", "X-Mixedcase-Add-1": "mixedcase-add-1",
                    "X-Mixedcase-Add-2": "mixedcase-add-2", "X-Uppercase-Add": "uppercase-add",
                    "Another-Header": "another-header-val"},
                   ("x-header-remove", "X-Header-Remove")),
            ExpectedResponse(
                request=Request(path="/response-and-request-header-modifiers", headers={
                    "X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1",
                    "X-Header-Echo": "echo"}),
                backend_set_response_headers={
                    "X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                    "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val",
                    "X-Header-Remove-1": "remove-val-1", "X-Header-Echo": "echo"},
                expected_request=ExpectedRequest(
                    path="/response-and-request-header-modifiers", headers={
                        "X-Header-Add": "header-val-1", "X-Header-Set": "set-overwrites-values",
                        "X-Header-Add-Append": "append-val-1,header-val-2",
                        "X-Header-Echo": "echo"}, absent_headers=("X-Header-Remove",)),
                response=Response(headers={
                    "X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                    "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
                    "Another-Header": "another-header-val", "X-Header-Echo": "echo"},
                    absent_headers=("X-Header-Remove-1", "X-Header-Remove-2")),
                backend=V1, namespace=INFRA))),
    GatewayConformanceTest(
        # upstream runs HTTPRouteRequestHeaderModifier's Test function against its own manifest
        # (whose route is also named request-header-modifier): the same steps
        "HTTPRouteBackendRequestHeaderModifier",
        "An HTTPRoute backend has request header modifier filters applied correctly",
        ("Gateway", "HTTPRoute", "HTTPRouteBackendRequestHeaderModification"),
        ("tests/httproute-request-header-modifier-backend.yaml",),
        next(test for test in GATEWAY_HTTP_CORE_TESTS
             if test.short_name == "HTTPRouteRequestHeaderModifier").steps,
        upstream_file="httproute-request-header-modifier.go"),
    GatewayConformanceTest(
        "HTTPRouteRequestHeaderModifierBackendWeights",
        "An HTTPRoute with backend request header modifier filter sends traffic to the "
        "correct backends",
        ("Gateway", "HTTPRouteBackendRequestHeaderModification", "HTTPRoute"),
        ("tests/httproute-request-header-modifier-backend-weights.yaml",),
        (accepted("request-header-modifier-backend-weights"),
         resolved(NN("request-header-modifier-backend-weights"), SAME),
         BackendHeaderNamesPod(SAME_NAMESPACE, ExpectedResponse(
             request=Request(path="/"), response=Response(status_code=200), namespace=INFRA))),
        upstream_file="httproute-request-header-modifier-backend-weights.go"),
    on_same_namespace(
        "HTTPRouteNamedRule",
        "An HTTPRoute with a named HTTPRouteRule",
        ("Gateway", "HTTPRoute", "HTTPRouteNamedRouteRule"),
        "httproute-named-rule", "http-named-rules", (
            code("/named", 200, namespace=INFRA), code("/unnamed", 200, namespace=INFRA)),
        provisional=True),
)
