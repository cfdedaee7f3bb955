"""The Gateway API conformance suite's mesh tests (`conformance/tests/mesh/*.go` at the commit
in upstream/UPSTREAM), translated by hand into data: each test's metadata (short name,
features, manifests, provisional) and what its clients send and expect, case for case, in the
upstream order. The manifests stay verbatim in upstream/; the checks are in expectations.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tests.conformance.gateway_api.expectations import (
    ECHO_V1,
    ECHO_V2,
    MESH_CONSUMER_NAMESPACE,
    MESH_NAMESPACE,
    POD_ADDRESS_OF_ECHO_V2,
    ExpectedRequest,
    ExpectedResponse,
    RedirectRequest,
    Request,
    Response,
)
from tests.conformance.gateway_api.report import Profile

NS = MESH_NAMESPACE


@dataclass(frozen=True)
class Exchanges:
    """Cases sent by one client (the first pod of `app` in `namespace`), each retried until it
    matches or the suite's timeout passes (MakeRequestAndExpectEventuallyConsistentResponse)."""

    cases: tuple[ExpectedResponse, ...]
    app: str = ECHO_V1
    namespace: str = MESH_NAMESPACE


@dataclass(frozen=True)
class Weighted:
    """One case made consistent first, then sent 500 times; the answering backends' shares
    must match `weights` (TestWeightedDistributionBatch, up to 10 attempts)."""

    expected: ExpectedResponse
    weights: Mapping[str, float]
    app: str = ECHO_V1
    namespace: str = MESH_NAMESPACE


@dataclass(frozen=True)
class ConformanceTest:
    short_name: str
    description: str
    features: tuple[str, ...]
    manifests: tuple[str, ...]
    steps: tuple[Exchanges | Weighted, ...]
    provisional: bool = False
    upstream_file: str = field(default="", compare=False)


def _backend(path: str, backend: str, **request: object) -> ExpectedResponse:
    return ExpectedResponse(request=Request(path=path, **request),  # type: ignore[arg-type]
                            backend=backend, namespace=NS)


def _status(path: str, status: int, **request: object) -> ExpectedResponse:
    return ExpectedResponse(request=Request(path=path, **request),  # type: ignore[arg-type]
                            response=Response(status_code=status))


def _redirect(path: str, status: int, redirect: RedirectRequest, *,
              host: str = "echo") -> ExpectedResponse:
    return ExpectedResponse(request=Request(host=host, path=path, unfollow_redirect=True),
                            response=Response(status_code=status), redirect_request=redirect,
                            namespace=NS)


def _backend_saw(path: str, host: str, seen_path: str, *, headers: Mapping[str, str] = {},
                 seen_headers: Mapping[str, str] = {}, absent: tuple[str, ...] = (),
                 backend: str = "echo-v1") -> ExpectedResponse:
    return ExpectedResponse(
        request=Request(path=path, host=host, headers=dict(headers)),
        expected_request=ExpectedRequest(path=seen_path, headers=dict(seen_headers),
                                         absent_headers=absent),
        backend=backend, namespace=NS)


def _answer(name: str, host: str, *, headers: Mapping[str, str] = {},
            response_headers: Mapping[str, str] = {}, absent: tuple[str, ...] = (),
            path: str = "") -> ExpectedResponse:
    return ExpectedResponse(
        test_case_name=name,
        request=Request(host=host, method="GET", path=path, headers=dict(headers)),
        response=Response(status_code=200, headers=dict(response_headers),
                          absent_headers=absent))


def _redirect_test(code: int) -> ConformanceTest:
    path = {303: "/redirect", 307: "/temporary", 308: "/permanent"}[code]
    return ConformanceTest(
        f"MeshHTTPRoute{code}Redirect", f"An HTTPRoute with statusCode {code} redirect filter",
        ("Mesh", "HTTPRoute", f"HTTPRoute{code}RedirectStatusCode"),
        (f"tests/mesh/httproute-{code}-redirect.yaml",),
        (Exchanges((ExpectedResponse(
            request=Request(path=path, unfollow_redirect=True),
            response=Response(status_code=code), redirect_request=RedirectRequest(path=path),
            namespace=NS),)),),
        provisional=True, upstream_file=f"httproute-{code}-redirect.go")


def _header_modifier_cases() -> tuple[ExpectedResponse, ...]:
    """MeshHTTPRouteRequestHeaderModifier's cases, shared with the Backend variant."""
    def case(path: str, headers: Mapping[str, str], seen: Mapping[str, str],
             absent: tuple[str, ...] = ()) -> ExpectedResponse:
        return ExpectedResponse(
            request=Request(path=path, headers=dict(headers)),
            expected_request=ExpectedRequest(path=path, headers=dict(seen), absent_headers=absent),
            backend="echo-v1", namespace=NS)
    return (
        case("/set", {"Some-Other-Header": "val"},
             {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
        case("/set", {"Some-Other-Header": "val", "X-Header-Set": "some-other-value"},
             {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
        case("/add", {"Some-Other-Header": "val"},
             {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}),
        case("/add", {"Some-Other-Header": "val", "X-Header-Add": "some-other-value"},
             {"Some-Other-Header": "val", "X-Header-Add": "some-other-value,add-appends-values"}),
        case("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
        case("/multiple", {"X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2",
                           "X-Header-Remove-2": "remove-val-2",
                           "Another-Header": "another-header-val"},
             {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
              "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2",
              "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val"},
             ("X-Header-Remove-1", "X-Header-Remove-2")),
        case("/case-insensitivity", {"x-header-set": "original-val-set",
                                     "x-header-add": "original-val-add",
                                     "x-header-remove": "original-val-remove",
                                     "Another-Header": "another-header-val"},
             {"X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add",
              "Another-Header": "another-header-val"},
             ("x-header-remove", "X-Header-Remove")),
    )


def _grpc_header_case(app_backend: str, match: str, headers: Mapping[str, str],
                      seen: Mapping[str, str], absent: tuple[str, ...] = ()) -> ExpectedResponse:
    sent = {"x-test-case": match, **headers}
    return ExpectedResponse(
        request=Request(protocol="grpc", host="echo:7070", headers=sent),
        expected_request=ExpectedRequest(host="echo:7070", headers=dict(seen),
                                         absent_headers=absent),
        response=Response(status_codes=(200,)), backend=app_backend, namespace=NS)


_REWRITE_HEADERS = {"X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1",
                    "X-Header-Set": "set-val"}
_REWRITTEN_HEADERS = {"X-Header-Add": "header-val-1",
                      "X-Header-Add-Append": "append-val-1,header-val-2",
                      "X-Header-Set": "set-overwrites-values"}

MESH_TESTS: tuple[ConformanceTest, ...] = (
    ConformanceTest(
        "MeshBasic", "A mesh client can communicate with a mesh server. This tests basic "
        "reachability with no configuration applied.", ("Mesh",), (),
        (Exchanges((ExpectedResponse(request=Request(host="echo", method="GET"),
                                     response=Response(status_code=200)),)),),
        upstream_file="mesh-basic.go"),
    ConformanceTest(
        "MeshConsumerRoute", "An HTTPRoute in a namespace other than its parentRef's namespace "
        "only affects requests from the route's namespace",
        ("Mesh", "MeshConsumerRoute", "HTTPRoute", "HTTPRouteResponseHeaderModification"),
        ("tests/mesh/mesh-consumer-route.yaml",),
        (Exchanges((_answer("request from consumer route's namespace modified by HTTPRoute",
                            "echo-v1.gateway-conformance-mesh", path="/",
                            response_headers={"X-Header-Set": "set"}),),
                   namespace=MESH_CONSUMER_NAMESPACE),
         Exchanges((_answer("request not from consumer route's namespace not modified by "
                            "HTTPRoute", "echo-v1.gateway-conformance-mesh", path="/",
                            absent=("X-Header-Set",)),))),
        upstream_file="mesh-consumer-route.go"),
    ConformanceTest(
        "MeshFrontendHostname", "Mesh parentRef matches Service IP (not Host)",
        ("Mesh", "MeshClusterIPMatching", "HTTPRoute", "HTTPRouteResponseHeaderModification"),
        ("tests/mesh/mesh-frontend.yaml",),
        (Exchanges((_answer("Send to service with wrong hostname", "echo-v2",
                            headers={"Host": "echo-v1"},
                            response_headers={"X-Header-Set": "set"}),
                    _answer("Send to other service with matching hostname", "echo-v1",
                            headers={"Host": "echo-v2"}, absent=("X-Header-Set",)))),),
        upstream_file="mesh-frontend-hostname.go"),
    ConformanceTest(
        "MeshFrontend", "Mesh rules should only apply to the associated frontend",
        ("Mesh", "HTTPRoute", "HTTPRouteResponseHeaderModification"),
        ("tests/mesh/mesh-frontend.yaml",),
        (Exchanges((_answer("Send to service", "echo-v2",
                            response_headers={"X-Header-Set": "set"}),
                    _answer("Send to pod IP", POD_ADDRESS_OF_ECHO_V2 + ":8080",
                            absent=("X-Header-Set",)))),),
        upstream_file="mesh-frontend.go"),
    ConformanceTest(
        "MeshPorts", "A mesh route can optionally configure 'port' in parentRef",
        ("Mesh", "HTTPRoute", "HTTPRouteParentRefPort", "HTTPRouteResponseHeaderModification"),
        ("tests/mesh/mesh-ports.yaml",),
        (Exchanges((_answer("Explicit port set, send to that port", "echo-v1",
                            response_headers={"X-Header-Set": "v1"}),
                    _answer("Explicit port, send to an excluded port", "echo-v1:8080",
                            absent=("X-Header-Set",)),
                    _answer("No port set", "echo-v2", response_headers={"X-Header-Set": "v2"}),
                    _answer("No port set", "echo-v2:8080",
                            response_headers={"X-Header-Set": "v2"}))),),
        upstream_file="mesh-ports.go"),
    ConformanceTest(
        "MeshTrafficSplit", "A mesh client can send traffic to a Service which is split between "
        "two versions", ("Mesh", "HTTPRoute"), ("tests/mesh/mesh-split.yaml",),
        (Exchanges(tuple(
            ExpectedResponse(request=Request(host="echo", method="GET", path=path),
                             response=Response(status_code=200))
            for path in ("/v1", "/v2"))),),
        upstream_file="mesh-split.go"),
    _redirect_test(303),
    _redirect_test(307),
    _redirect_test(308),
    ConformanceTest(
        "MeshHTTPRouteMatching", "A single HTTPRoute with path and header matching for "
        "different backends", ("Mesh", "HTTPRoute"), ("tests/mesh/httproute-matching.yaml",),
        (Exchanges((
            _backend("/", "echo-v1"), _backend("/example", "echo-v1"),
            _backend("/", "echo-v1", headers={"Version": "one"}),
            _backend("/v2", "echo-v2"), _backend("/v2/example", "echo-v2"),
            _backend("/", "echo-v2", headers={"Version": "two"}),
            _backend("/v2/", "echo-v2"),
            _backend("/v2example", "echo-v1"),  # not a path segment prefix of /v2
            _backend("/foo/v2/example", "echo-v1"))),),
        upstream_file="httproute-matching.go"),
    ConformanceTest(
        "MeshHTTPRouteNamedRule", "An HTTPRoute with a named HTTPRouteRule",
        ("Mesh", "HTTPRoute", "MeshHTTPRouteNamedRouteRule"),
        ("tests/mesh/httproute-named-rule.yaml",),
        (Exchanges((
            ExpectedResponse(request=Request(path="/named"),
                             expected_request=ExpectedRequest(path="/named"),
                             backend="echo-v1", namespace=NS),
            # upstream expects path "/named" here too; the mesh client does not check paths
            ExpectedResponse(request=Request(path="/unnamed"),
                             expected_request=ExpectedRequest(path="/named"),
                             backend="echo-v2", namespace=NS))),),
        provisional=True, upstream_file="httproute-named-rule.go"),
    ConformanceTest(
        "MeshHTTPRouteQueryParamMatching", "A single HTTPRoute with query param matching for "
        "different backends", ("Mesh", "HTTPRoute", "MeshHTTPRouteQueryParamMatching"),
        ("tests/mesh/httproute-query-param-matching.yaml",),
        (Exchanges((
            _backend("/?animal=whale", "echo-v1"), _backend("/?animal=dolphin", "echo-v2"),
            _backend("/?animal=whale&otherparam=irrelevant", "echo-v1"),
            _backend("/?animal=dolphin&color=yellow", "echo-v2"),
            _status("/?color=blue", 404), _status("/?animal=dog", 404),
            _status("/?animal=whaledolphin", 404), _status("/", 404),
            _backend("/path1?animal=whale", "echo-v1"),
            _backend("/?animal=whale", "echo-v2", headers={"version": "one"}),
            _backend("/path3?animal=shark", "echo-v1"),
            _backend("/path4?animal=kraken", "echo-v1", headers={"version": "three"}),
            _status("/?animal=shark", 404), _status("/path4?animal=kraken", 404),
            _backend("/path5?animal=hydra", "echo-v1"))),),
        upstream_file="httproute-query-param-matching.go"),
    ConformanceTest(
        "MeshHTTPRouteRedirectHostAndStatus", "An HTTPRoute with hostname and statusCode "
        "redirect filters", ("Mesh", "HTTPRoute"),
        ("tests/mesh/httproute-redirect-host-and-status.yaml",),
        (Exchanges((
            _redirect("/hostname-redirect", 302, RedirectRequest(host="example.org")),
            _redirect("/host-and-status", 301, RedirectRequest(host="example.org")))),),
        upstream_file="httproute-redirect-host-and-status.go"),
    ConformanceTest(
        "MeshHTTPRouteRedirectPath", "An HTTPRoute with scheme redirect filter",
        ("Mesh", "HTTPRoute", "MeshHTTPRouteRedirectPath"),
        ("tests/mesh/httproute-redirect-path.yaml",),
        (Exchanges((
            _redirect("/original-prefix/lemon", 302,
                      RedirectRequest(path="/replacement-prefix/lemon")),
            _redirect("/full/path/original", 302, RedirectRequest(path="/full-path-replacement")),
            _redirect("/path-and-host", 302,
                      RedirectRequest(host="example.org", path="/replacement-prefix")),
            _redirect("/path-and-status", 301, RedirectRequest(path="/replacement-prefix")),
            _redirect("/full-path-and-host", 302,
                      RedirectRequest(host="example.org", path="/replacement-full")),
            _redirect("/full-path-and-status", 301,
                      RedirectRequest(path="/replacement-full")))),),
        upstream_file="httproute-redirect-path.go"),
    ConformanceTest(
        "MeshHTTPRouteRedirectPort", "An HTTPRoute with a port redirect filter",
        ("Mesh", "HTTPRoute", "MeshHTTPRouteRedirectPort"),
        ("tests/mesh/httproute-redirect-port.yaml",),
        (Exchanges((
            _redirect("/port", 302, RedirectRequest(port="8083")),
            _redirect("/port-and-host", 302, RedirectRequest(host="example.org", port="8083")),
            _redirect("/port-and-status", 301, RedirectRequest(port="8083")),
            _redirect("/port-and-host-and-status", 302,
                      RedirectRequest(port="8083", host="example.org")))),),
        upstream_file="httproute-redirect-port.go"),
    ConformanceTest(
        "MeshHTTPRouteSchemeRedirect", "An HTTPRoute with a scheme redirect filter",
        ("Mesh", "HTTPRoute", "MeshHTTPRouteSchemeRedirect"),
        ("tests/mesh/httproute-redirect-scheme.yaml",),
        (Exchanges((
            _redirect("/scheme", 302, RedirectRequest(scheme="https")),
            _redirect("/scheme-and-host", 302,
                      RedirectRequest(host="example.org", scheme="https")),
            _redirect("/scheme-and-status", 301, RedirectRequest(scheme="https")),
            _redirect("/scheme-and-host-and-status", 302,
                      RedirectRequest(scheme="https", host="example.org")))),),
        upstream_file="httproute-redirect-scheme.go"),
    ConformanceTest(
        "MeshHTTPRouteBackendRequestHeaderModifier", "An HTTPRoute backend has request header "
        "modifier filters applied correctly",
        ("Mesh", "HTTPRoute", "MeshHTTPRouteBackendRequestHeaderModification"),
        ("tests/mesh/httproute-request-header-modifier-backend.yaml",),
        (Exchanges(_header_modifier_cases()),),
        upstream_file="httproute-request-header-modifier.go"),
    ConformanceTest(
        "MeshHTTPRouteRequestHeaderModifier", "An HTTPRoute has request header modifier "
        "filters applied correctly", ("Mesh", "HTTPRoute"),
        ("tests/mesh/httproute-request-header-modifier.yaml",),
        (Exchanges(_header_modifier_cases()),),
        upstream_file="httproute-request-header-modifier.go"),
    ConformanceTest(
        "MeshHTTPRouteRewritePath", "An HTTPRoute with path rewrite filter",
        ("Mesh", "HTTPRoute", "MeshHTTPRouteRewritePath"),
        ("tests/mesh/httproute-rewrite-path.yaml",),
        (Exchanges((
            _backend_saw("/prefix/one/two", "echo", "/one/two"),
            _backend_saw("/strip-prefix/three", "echo", "/three"),
            _backend_saw("/strip-prefix", "echo", "/"),
            _backend_saw("/full/one/two", "echo", "/one"),
            _backend_saw("/full/rewrite-path-and-modify-headers/test", "echo", "/test",
                         headers=_REWRITE_HEADERS, seen_headers=_REWRITTEN_HEADERS,
                         absent=("X-Header-Remove",)),
            _backend_saw("/prefix/rewrite-path-and-modify-headers/one", "echo", "/prefix/one",
                         headers=_REWRITE_HEADERS, seen_headers=_REWRITTEN_HEADERS,
                         absent=("X-Header-Remove",)))),),
        upstream_file="httproute-rewrite-path.go"),
    ConformanceTest(
        "MeshHTTPRouteSimpleSameNamespace", "A single HTTPRoute in the gateway-conformance-mesh "
        "namespace attaches to a Service in the same namespace", ("Mesh", "HTTPRoute"),
        ("tests/mesh/httproute-simple-same-namespace.yaml",),
        (Exchanges((ExpectedResponse(request=Request(path="/", host="echo"),
                                     response=Response(status_code=200)),)),),
        upstream_file="httproute-simple-same-namespace.go"),
    ConformanceTest(
        "MeshHTTPRouteWeight", "An HTTPRoute with weighted backends", ("Mesh", "HTTPRoute"),
        ("tests/mesh/httproute-weight.yaml",),
        (Weighted(ExpectedResponse(request=Request(path="/", host="echo"),
                                   response=Response(status_code=200), namespace=NS),
                  {"echo-v1": 0.7, "echo-v2": 0.3}),),
        upstream_file="httproute-weight.go"),
    ConformanceTest(
        "MeshGRPCRouteRequestHeaderModifier", "A GRPCRoute with RequestHeaderModifier filter "
        "should modify request headers in mesh mode", ("Mesh", "GRPCRoute"),
        ("tests/mesh/grpcroute-request-header-modifier.yaml",),
        (Exchanges((
            _grpc_header_case("echo-v1", "set",
                              {"some-other-header": "this-header-should-be-set",
                               "x-header-set": "this-value-should-be-overwritten"},
                              {"x-test-case": "set",
                               "some-other-header": "this-header-should-be-set",
                               "x-header-set": "set-overwrites-values"}),
            _grpc_header_case("echo-v1", "add",
                              {"x-header-add": "this-value-should-be-appended"},
                              {"x-test-case": "add",
                               "x-header-add": "this-value-should-be-appended,add-appends-values"}),
            _grpc_header_case("echo-v1", "remove", {"x-header-remove": "this-should-be-removed"},
                              {"x-test-case": "remove"}, ("x-header-remove",)))),
         Exchanges((
             _grpc_header_case("echo-v2", "multi",
                               {"x-header-set-2": "set-header-2", "x-header-add-2": "add-header-2",
                                "x-header-remove-2": "should-be-removed-2"},
                               {"x-test-case": "multi", "x-header-set-1": "header-set-1",
                                "x-header-set-2": "header-set-2",
                                "x-header-add-1": "header-add-1",
                                "x-header-add-2": "add-header-2,header-add-2"},
                               ("x-header-remove-1", "x-header-remove-2")),), app=ECHO_V2)),
        upstream_file="grpcroute-request-header-modifier.go"),
    ConformanceTest(
        "MeshGRPCRouteWeight", "A GRPCRoute with weighted backends in mesh mode",
        ("Mesh", "GRPCRoute"), ("tests/mesh/grpcroute-weight.yaml",),
        (Weighted(ExpectedResponse(request=Request(protocol="grpc", host="echo:7070"),
                                   response=Response(status_code=200), namespace=NS),
                  {"echo-v1": 0.7, "echo-v2": 0.3}),),
        upstream_file="grpcroute-weight.go"),
)

# pkg/features/mesh.go and conformance/utils/suite/profiles.go at the recorded commit.
MESH_EXTENDED_FEATURES = frozenset({
    "MeshClusterIPMatching", "MeshConsumerRoute", "MeshHTTPRouteRewritePath",
    "MeshHTTPRouteSchemeRedirect", "MeshHTTPRouteRedirectPort", "MeshHTTPRouteRedirectPath",
    "MeshHTTPRouteBackendRequestHeaderModification", "MeshHTTPRouteQueryParamMatching",
    "MeshHTTPRouteNamedRouteRule"})
MESH_PROFILES = (
    Profile("MESH-HTTP", frozenset({"Mesh", "HTTPRoute"}), MESH_EXTENDED_FEATURES),
    Profile("MESH-GRPC", frozenset({"Mesh", "GRPCRoute"}), MESH_EXTENDED_FEATURES),
)

# The gateway profiles (profiles.go), their extended sets the union of pkg/features' sets as
# profiles.go names them: GATEWAY-GRPC takes no GRPCRoute extended feature, so the tests of
# GRPCRouteNamedRouteRule and GRPCRouteRequestHeaderModifier count in no gateway profile.
GATEWAY_EXTENDED_FEATURES = frozenset({  # features.GatewayExtendedFeatures
    "GatewayPort8080", "GatewayStaticAddresses", "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests", "GatewayInfrastructurePropagation",
    "GatewayAddressEmpty", "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback", "ListenerSet"})
HTTPROUTE_EXTENDED_FEATURES = frozenset({  # features.HTTPRouteExtendedFeatures
    "HTTPRouteDestinationPortMatching", "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteQueryParamMatching", "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification", "HTTPRoutePortRedirect", "HTTPRouteSchemeRedirect",
    "HTTPRoutePathRedirect", "HTTPRouteHostRewrite", "HTTPRoutePathRewrite",
    "HTTPRouteRequestMirror", "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror", "HTTPRouteRequestTimeout", "HTTPRouteBackendTimeout",
    "HTTPRouteParentRefPort", "HTTPRouteBackendProtocolH2C", "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteNamedRouteRule", "HTTPRouteCORS", "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode", "HTTPRoute308RedirectStatusCode", "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout", "HTTPRouteRetryConnectionError",
    "HTTPRouteBackendURLRewrite", "HTTPRouteBackendRequestRedirect"})
TLSROUTE_EXTENDED_FEATURES = frozenset({"TLSRouteModeTerminate", "TLSRouteModeMixed"})
BACKEND_TLS_POLICY_FEATURES = frozenset({  # BackendTLSPolicy core and extended
    "BackendTLSPolicy", "BackendTLSPolicySANValidation"})
GATEWAY_HTTP = Profile(
    "GATEWAY-HTTP", frozenset({"Gateway", "ReferenceGrant", "HTTPRoute"}),
    GATEWAY_EXTENDED_FEATURES | HTTPROUTE_EXTENDED_FEATURES | BACKEND_TLS_POLICY_FEATURES)
GATEWAY_TLS = Profile(
    "GATEWAY-TLS", frozenset({"Gateway", "ReferenceGrant", "TLSRoute"}),
    GATEWAY_EXTENDED_FEATURES | TLSROUTE_EXTENDED_FEATURES | BACKEND_TLS_POLICY_FEATURES)
GATEWAY_GRPC = Profile(
    "GATEWAY-GRPC", frozenset({"Gateway", "ReferenceGrant", "GRPCRoute"}),
    GATEWAY_EXTENDED_FEATURES | BACKEND_TLS_POLICY_FEATURES)
GATEWAY_PROFILES = (GATEWAY_HTTP, GATEWAY_TLS, GATEWAY_GRPC)


def profiles_of(test: ConformanceTest) -> tuple[str, ...]:
    """getConformanceProfilesForTest: the profiles whose core and extended features together
    name every feature of the test. A test needing a feature outside them (MeshFrontend needs
    HTTPRouteResponseHeaderModification) counts in no mesh profile, though it runs."""
    return tuple(profile.name for profile in MESH_PROFILES if profile.has(test))
