"""GATEWAY-HTTP extended tests of the conformance suite (`conformance/tests/*.go` whose
features are within the profile but not all core), translated by hand into data, same shape as
gateway_http_suite.py. gateway_tests.NOT_TRANSLATED lists the extended tests not done here.
"""

from __future__ import annotations

from collections.abc import Mapping

from tests.conformance.gateway_api.expectations import (
    ExpectedRequest,
    ExpectedResponse,
    MirroredBackend,
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
    MirrorExchanges,
    PercentMirror,
    RetryProbe,
    Subtest,
    WebSocketEcho,
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
    resolved,
)

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


def mirrored(path: str, *mirrors: tuple[str, int | None], headers: Mapping[str, str] = {},
             seen_headers: Mapping[str, str] = {}, absent: tuple[str, ...] = ()
             ) -> ExpectedResponse:
    """A mirror case: answered by infra-backend-v1 having seen the path (and headers), and
    mirrored to each (backend, percent)."""
    return ExpectedResponse(
        request=Request(path=path, headers=dict(headers)),
        expected_request=ExpectedRequest(path=path, headers=dict(seen_headers),
                                         absent_headers=absent),
        backend=V1, namespace=INFRA,
        mirrored_to=tuple(MirroredBackend(name, INFRA, percent) for name, percent in mirrors))


def retry(name: str, path: str, response: Response, **simulation: str) -> RetryProbe:
    return RetryProbe(SAME_NAMESPACE, name, path, simulation, response)


def _no_parent(short: str, description: str, name: str, route: str, gateway: str, first: str,
               check_resolved: bool) -> GatewayConformanceTest:
    """A route whose parentRef matches no listener: Accepted=False/NoMatchingParent, no
    accepted parent, the Gateway with no route attached."""
    steps = (resolved(NN(route), NN(gateway)),) if check_resolved else ()
    return GatewayConformanceTest(
        short, description, ("Gateway", "HTTPRoute", _NO_PARENT_FEATURE[short]),
        (f"tests/{name}.yaml",),
        (*steps,
         Subtest(first, (RouteCondition(NN(route), NN(gateway),
                                        Condition("Accepted", "False", "NoMatchingParent")),)),
         Subtest("Route should not have Parents accepted in status", (
             RouteNoAcceptedParents(NN(route)),)),
         Subtest("Gateway should have 0 Routes attached", (GatewayZeroRoutes(NN(gateway)),))),
        upstream_file=f"{name}.go")


_NO_PARENT_FEATURE = {
    "HTTPRouteInvalidParentRefNotMatchingListenerPort": "HTTPRouteDestinationPortMatching",
    "HTTPRouteInvalidParentRefSectionNameNotMatchingPort": "HTTPRouteParentRefPort"}
_ACCEPTED_AND_RESOLVED = (Condition("Accepted", "True"), Condition("ResolvedRefs", "True"))
_PORTS = GatewayRef("httproute-listener-port-matching")
_MIRROR_HEADERS = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1"}
_MIRROR_SEEN = {"X-Header-Add": "header-val-1", "X-Header-Add-Append": "append-val-1,header-val-2",
                "X-Header-Set": "set-overwrites-values"}

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
         GatewayExchanges(_PORT_80, note="subtests http-listener-on-80/<case name>", cases=(
             redirect("/scheme-nil-and-port-nil", 302, scheme="http", to_host="example.org"),
             redirect("/scheme-nil-and-port-80", 302, scheme="http", to_host="example.org"),
             redirect("/scheme-nil-and-port-8080", 302, scheme="http", port="8080",
                      to_host="example.org"),
             redirect("/scheme-https-and-port-nil", 302, scheme="https", to_host="example.org"),
             redirect("/scheme-https-and-port-443", 302, scheme="https", to_host="example.org"),
             redirect("/scheme-https-and-port-8443", 302, scheme="https", port="8443",
                      to_host="example.org"))),
         GatewayExchanges(_PORT_8080, note="subtests http-listener-on-8080/<case name>", cases=(
             redirect("/scheme-nil-and-port-nil", 302, scheme="http", port="8080",
                      to_host="example.org"),
             redirect("/scheme-nil-and-port-80", 302, scheme="http", to_host="example.org"),
             redirect("/scheme-https-and-port-nil", 302, scheme="https",
                      to_host="example.org"))),
         # SNI example.org
         GatewayExchanges(_PORT_443, note="subtests https-listener-on-443/<case name>", cases=(
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
    GatewayConformanceTest(
        "GatewayWithAttachedRoutesWithPort8080",
        "A Gateway in the gateway-conformance-infra namespace should be attached to "
        "routes.",
        ("Gateway", "GatewayPort8080", "HTTPRoute"),
        ("tests/gateway-with-attached-routes-with-port-8080.yaml",),
        (Subtest("Gateway listener should have attached route by specifying the sectionName", (
            GatewayListeners(NN("gateway-with-two-listeners-and-one-attached-route"), (
                ListenerStatus("http-unattached", ("HTTPRoute",), _ACCEPTED_AND_RESOLVED, 0),
                ListenerStatus("http", ("HTTPRoute",), _ACCEPTED_AND_RESOLVED, 1))),)),),
        upstream_file="gateway-with-attached-routes.go"),
    GatewayConformanceTest(
        "HTTPRouteListenerPortMatching",
        "Multiple HTTP listeners with different ports, each with a different HTTPRoute",
        ("Gateway", "HTTPRoute", "HTTPRouteParentRefPort"),
        ("tests/httproute-listener-port-matching.yaml",),
        (NamespacesReady(),
         accepted("backend-v1", GatewayRef(_PORTS.name, listeners=("listener-1",))),
         resolved(NN("backend-v1"), _PORTS.nn),
         accepted("backend-v2", GatewayRef(_PORTS.name, listeners=("listener-2",))),
         resolved(NN("backend-v2"), _PORTS.nn),
         accepted("backend-v3", GatewayRef(_PORTS.name, listeners=("listener-4",))),
         resolved(NN("backend-v3"), _PORTS.nn),
         # each case goes to the address of the listener its Host's port names: no port or
         # another port listener-1's (80), 8080 listener-2's, 8090 listener-4's
         GatewayExchanges(GatewayRef(_PORTS.name, listeners=("listener-1",)), (
             to("/", V1, host="foo.com"),)),
         GatewayExchanges(GatewayRef(_PORTS.name, listeners=("listener-2",)), (
             to("/", V2, host="foo.com:8080"), to("/", V2, host="bar.com:8080"))),
         GatewayExchanges(GatewayRef(_PORTS.name, listeners=("listener-4",)), (
             to("/", V3, host="foo.com:8090"), code("/", 404, host="bar.com:8090")))),
        upstream_file="httproute-listener-port-matching.go"),
    _no_parent("HTTPRouteInvalidParentRefNotMatchingListenerPort",
               "A single HTTPRoute in the gateway-conformance-infra namespace should set the "
               "Accepted status to False with reason NoMatchingParent when attempting to bind "
               "to a Gateway that does not have a matching ListenerPort.",
               "httproute-invalid-parentref-not-matching-listener-port",
               "httproute-listener-not-matching-route-port", "same-namespace",
               "HTTPRoute with no matching port in ParentRef has an Accepted Condition with "
               "status False and Reason NoMatchingParent", True),
    _no_parent("HTTPRouteInvalidParentRefSectionNameNotMatchingPort",
               "A single HTTPRoute in the gateway-conformance-infra namespace should set the "
               "Accepted status to False with reason NoMatchingParent when attempting to bind "
               "to a Gateway that SectionName does not match Port value.",
               "httproute-invalid-parentref-section-name-not-matching-port",
               "httproute-listener-section-name-not-matching-port",
               "gateway-with-one-not-matching-port-and-section-name-route",
               "HTTPRoute with sectionName does not match Port in ParentRef has an Accepted "
               "Condition with status False and Reason NoMatchingParent", False),
    on_same_namespace(
        "HTTPRouteTimeoutRequest",
        "An HTTPRoute with request timeout", ("Gateway", "HTTPRoute", "HTTPRouteRequestTimeout"),
        "httproute-timeout-request", "request-timeout", (
            code("/request-timeout", 200, namespace=INFRA),
            code("/request-timeout?delay=1s", 504, namespace=INFRA),
            code("/disable-request-timeout?delay=1s", 200, namespace=INFRA))),
    on_same_namespace(
        "HTTPRouteTimeoutBackendRequest",
        "An HTTPRoute with backend request timeout",
        ("Gateway", "HTTPRoute", "HTTPRouteBackendTimeout"),
        "httproute-timeout-backend-request", "backend-request-timeout", (
            code("/backend-timeout", 200, namespace=INFRA),
            code("/backend-timeout?delay=1s", 504, namespace=INFRA),
            code("/disable-backend-timeout?delay=1s", 200, namespace=INFRA))),
    GatewayConformanceTest(
        "HTTPRouteRequestMirror",
        "An HTTPRoute with request mirror filter",
        ("Gateway", "HTTPRoute", "HTTPRouteRequestMirror"),
        ("tests/httproute-request-mirror.yaml",),
        # no ResolvedRefs check in the Go test
        (accepted("request-mirror"), MirrorExchanges(SAME_NAMESPACE, (
            mirrored("/mirror", (V2, None)),
            mirrored("/mirror-and-modify-headers", (V2, None), headers=_MIRROR_HEADERS,
                     seen_headers=_MIRROR_SEEN, absent=("X-Header-Remove",))))),
        upstream_file="httproute-request-mirror.go"),
    GatewayConformanceTest(
        "HTTPRouteRequestMultipleMirrors",
        "An HTTPRoute with multiple request mirror filters",
        ("Gateway", "HTTPRoute", "HTTPRouteRequestMirror", "HTTPRouteRequestMultipleMirrors"),
        ("tests/httproute-request-multiple-mirrors.yaml",),
        (accepted("request-multiple-mirrors"), MirrorExchanges(SAME_NAMESPACE, (
            mirrored("/multi-mirror", (V2, None), (V3, None)),
            mirrored("/multi-mirror-and-modify-request-headers", (V2, None), (V3, None),
                     headers=_MIRROR_HEADERS, seen_headers=_MIRROR_SEEN,
                     absent=("X-Header-Remove",))))),
        upstream_file="httproute-request-multiple-mirrors.go"),
    GatewayConformanceTest(
        "HTTPRouteRequestPercentageMirror",
        "An HTTPRoute with percentage based request mirroring",
        ("Gateway", "HTTPRoute", "HTTPRouteRequestPercentageMirror"),
        ("tests/httproute-request-percentage-mirror.yaml",),
        (accepted("request-percentage-mirror"),
         resolved(NN("request-percentage-mirror"), SAME),
         PercentMirror(SAME_NAMESPACE, (
             mirrored("/percent-mirror", (V2, 20)),
             mirrored("/percent-mirror-fraction", (V2, 50)),
             mirrored("/percent-mirror-and-modify-headers", (V2, 35), headers=_MIRROR_HEADERS,
                      seen_headers=_MIRROR_SEEN, absent=("X-Header-Remove",))))),
        provisional=True, upstream_file="httproute-request-percentage-mirror.go"),
    GatewayConformanceTest(
        "HTTPRouteRetry",
        "An HTTPRoute that has a Retry policy configured should retry failed requests "
        "according to the specified codes and attempt limits, returning a successful "
        "response when the backend recovers within the retry budget and surfacing the "
        "original error when it does not.", ("Gateway", "HTTPRoute", "HTTPRouteRetry"),
        ("tests/httproute-retry.yaml",),
        (accepted("retries"), resolved(NN("retries"), SAME),
         # subtests "<i> request to '<path>' <name>"
         retry("succeeds after 2 retries when retry is configured for status code 500 and max "
               "attempts is 3", "/retry/code-500-attempts-3", Response(status_code=200),
               responseCode="500", succeedAfter="2"),
         retry("fails when required retries on 500 exceed max attempts",
               "/retry/code-500-attempts-3", Response(status_code=500),
               responseCode="500", succeedAfter="4"),
         retry("does not retry on 503 when retry is only configured for status code 500",
               "/retry/code-500-attempts-3", Response(status_code=503),
               responseCode="503", succeedAfter="2"),
         *(step for code_ in ("500", "502", "503", "504") for step in (
             retry(f"succeeds after 1 retry on {code_} when retry is configured for all status "
                   "code and max attempts is 2", "/retry/code-all-attempts-2",
                   Response(status_code=200), responseCode=code_, succeedAfter="1"),
             retry(f"fails when required retries on {code_} exceed max attempts",
                   "/retry/code-all-attempts-2", Response(status_code=int(code_)),
                   responseCode=code_, succeedAfter="3")))),
        upstream_file="httproute-retry.go"),
    GatewayConformanceTest(
        "HTTPRouteRetryConnectionError",
        "An HTTPRoute configured with a Retry policy should retry requests that fail "
        "due to TCP connection resets up to the configured maximum number of attempts, "
        "returning a successful response only when the backend recovers within the "
        "retry budget.",
        ("Gateway", "HTTPRoute", "HTTPRouteRetry", "HTTPRouteRetryConnectionError"),
        ("tests/httproute-retry-connection-error.yaml",),
        (accepted("retries-connection-error"), resolved(NN("retries-connection-error"), SAME),
         retry("succeeds after 2 retries on connection errors and max attempts is 3",
               "/retry/no-status-code-attempts-3", Response(status_code=200),
               succeedAfter="2"),
         retry("fails when required retries on connection errors exceed max attempts",
               "/retry/no-status-code-attempts-3", Response(status_codes=(500, 503)),
               succeedAfter="4")),
        upstream_file="httproute-retry-connection-error.go"),
    GatewayConformanceTest(
        "HTTPRouteRetryWithTimeouts",
        "An HTTPRoute that has both Retry and Timeout policies configured should retry "
        "failed requests only while the configured timeouts permit, returning a "
        "successful response when the backend recovers within the timeout budget and "
        "surfacing a timeout error when retries or backend delays exceed the request "
        "or backend request timeout.",
        ("Gateway", "HTTPRoute", "HTTPRouteRetry", "HTTPRouteRetryBackendTimeout",
         "HTTPRouteRequestTimeout", "HTTPRouteBackendTimeout"),
        ("tests/httproute-retry-with-timeouts.yaml",),
        (accepted("retries-with-timeouts"), resolved(NN("retries-with-timeouts"), SAME),
         retry("succeeds after 2 retries on backend timeout with max attempts is 3",
               "/retry/backend-request-timeout-200ms", Response(status_code=200),
               responseCode="500", succeedAfter="2", delayRetry="300ms"),
         retry("fails when required retries on backend timeout exceed max attempts",
               "/retry/backend-request-timeout-200ms", Response(status_code=504),
               responseCode="500", succeedAfter="3", delayRetry="300ms"),
         retry("succeeds when retries complete within the request timeout",
               "/retry/request-timeout-200ms", Response(status_code=200),
               responseCode="500", succeedAfter="1"),
         retry("fails with 504 when retry delays exceed the request timeout",
               "/retry/request-timeout-200ms", Response(status_code=504),
               responseCode="500", succeedAfter="4", delayRetry="100ms")),
        upstream_file="httproute-retry-with-timeouts.go"),
    GatewayConformanceTest(
        "HTTPRouteBackendProtocolH2C",
        "A HTTPRoute with a BackendRef that has an appProtocol kubernetes.io/h2c "
        "should be functional",
        ("Gateway", "HTTPRoute", "HTTPRouteBackendProtocolH2C"),
        ("tests/httproute-backend-protocol-h2c.yaml",),
        # no ResolvedRefs check; h2c by prior knowledge only (the upgrade is deprecated)
        (accepted("backend-protocol-h2c"),
         Subtest("http2 prior knowledge request should reach backend", (GatewayExchanges(
             SAME_NAMESPACE, (ExpectedResponse(
                 request=Request(path="/", protocol="H2C_PRIOR_KNOWLEDGE"),
                 response=Response(status_code=200), backend=V1, namespace=INFRA),)),))),
        upstream_file="httproute-backend-protocol-h2c.go"),
    GatewayConformanceTest(
        "HTTPRouteBackendProtocolWebSocket",
        "A HTTPRoute with a BackendRef that has an appProtocol kubernetes.io/ws should "
        "be functional",
        ("Gateway", "HTTPRoute", "HTTPRouteBackendProtocolWebSocket"),
        ("tests/httproute-backend-protocol-websocket.yaml",),
        (accepted("backend-protocol-ws"),
         Subtest("websocket connection should reach backend", (WebSocketEcho(SAME_NAMESPACE),))),
        upstream_file="httproute-backend-protocol-websocket.go"),
    on_same_namespace(
        "HTTPRouteBackendURLRewrite",
        "An HTTPRoute with URLRewrite filter applied at the BackendRef level",
        ("Gateway", "HTTPRoute", "HTTPRouteBackendURLRewrite"),
        "httproute-backend-url-rewrite", "backend-url-rewrite", (
            saw("/full/original", V1, "/rewritten-full"),
            saw("/prefix/original", V1, "/rewritten-prefix/original"))),
    on_same_namespace(
        "HTTPRouteBackendRequestRedirect",
        "An HTTPRoute with RequestRedirect filter applied at the BackendRef level",
        ("Gateway", "HTTPRoute", "HTTPRouteBackendRequestRedirect"),
        "httproute-backend-request-redirect", "backend-request-redirect", (
            redirect("/full/original", 302, to_path="/redirected-full"),
            redirect("/prefix/original", 302, to_path="/redirected-prefix/original"))),
)
