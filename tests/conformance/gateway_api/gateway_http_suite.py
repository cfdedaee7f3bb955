"""The GATEWAY-HTTP core tests of the Gateway API conformance suite (`conformance/tests/*.go` at
the commit in upstream/UPSTREAM whose features are all among Gateway, ReferenceGrant and
HTTPRoute, less the Gateway-only ones in gateway_suite.py), translated by hand into data: each
test's metadata and its steps in the Go test's order (status expectations, procedural steps and
the gateway client's exchanges, case for case). Manifests stay verbatim in upstream/.
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
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    SAME_NAMESPACE,
    V1,
    V2,
    V3,
    GatewayConformanceTest,
    GatewayExchanges,
    GatewayWeighted,
    Subtest,
)
from tests.conformance.gateway_api.status import (
    APP_NAMESPACE,
    NN,
    WEB_NAMESPACE,
    Condition,
    Delete,
    GatewayListeners,
    GatewayRef,
    GatewayZeroRoutes,
    LatestConditions,
    ListenerStatus,
    NamespacesReady,
    ObservedGenerationBumped,
    ParentStatus,
    RouteCondition,
    RouteNoAcceptedParents,
    RouteParents,
    RoutesAccepted,
    Update,
    resolved,
)

CORE = ("Gateway", "HTTPRoute")
ACCEPTED_AND_RESOLVED = (Condition("Accepted", "True"), Condition("ResolvedRefs", "True"))
SAME = SAME_NAMESPACE.nn


def to(path: str, backend: str, *, host: str = "", headers: Mapping[str, str] = {},
       method: str = "", namespace: str = INFRA, status: int = 0) -> ExpectedResponse:
    """A case answered by `backend` (Backend, Namespace set as the Go case sets them)."""
    return ExpectedResponse(
        request=Request(host=host, path=path, headers=dict(headers), method=method),
        response=Response(status_code=status), backend=backend, namespace=namespace)


def code(path: str, status: int, *, host: str = "", headers: Mapping[str, str] = {},
         method: str = "", namespace: str = "") -> ExpectedResponse:
    """A case expecting only a status code (no Backend)."""
    return ExpectedResponse(
        request=Request(host=host, path=path, headers=dict(headers), method=method),
        response=Response(status_code=status), namespace=namespace)


def accepted(route: str, gateway: GatewayRef = SAME_NAMESPACE, *more: str,
             route_namespace: str = INFRA) -> RoutesAccepted:
    names = (route, *more)
    return RoutesAccepted(gateway, tuple(NN(name, route_namespace) for name in names))


def simple(short: str, description: str, route: str, cases: tuple[ExpectedResponse, ...], *,
           features: tuple[str, ...] = CORE, gateway: GatewayRef = SAME_NAMESPACE,
           name: str = "", provisional: bool = False) -> GatewayConformanceTest:
    """The commonest shape: Gateway and route Accepted, ResolvedRefs True, then the cases sent
    to the Gateway's address (in parallel subtests, each eventually consistent)."""
    name = name or short_file(short)
    return GatewayConformanceTest(
        short, description, features, (f"tests/{name}.yaml",),
        (accepted(route, gateway), resolved(NN(route), gateway.nn),
         GatewayExchanges(gateway, cases)),
        provisional=provisional, upstream_file=f"{name}.go")


def short_file(short: str) -> str:
    return _FILES[short]


_FILES = {
    "HTTPRouteMatching": "httproute-matching",
    "HTTPRouteExactPathMatching": "httproute-exact-path-matching",
    "HTTPRouteHeaderMatching": "httproute-header-matching",
    "HTTPRoutePathMatchOrder": "httproute-path-match-order",
    "HTTPRouteRedirectHostAndStatus": "httproute-redirect-host-and-status",
    "HTTPRouteRequestHeaderModifier": "httproute-request-header-modifier",
    "HTTPRouteNoBackendRefs": "httproute-omitted-backendrefs",
}


def _rejected(short: str, description: str, name: str, route: NN, condition: Condition,
              subtests: tuple[str, str], features: tuple[str, ...] = CORE
              ) -> GatewayConformanceTest:
    """A route whose only backendRef is unusable: Gateway and route Accepted, then a subtest
    for the route's ResolvedRefs=False condition and one where a GET to it gets 500."""
    path = "/v2" if "unknown-kind" in name or "partially" in name else "/"
    return GatewayConformanceTest(
        short, description, features, (f"tests/{name}.yaml",),
        (accepted(route.name),
         Subtest(subtests[0], (RouteCondition(route, SAME, condition),)),
         Subtest(subtests[1], (GatewayExchanges(SAME_NAMESPACE,
                                                (code(path, 500, method="GET"),)),))),
        upstream_file=f"{name}.go")


def _listener(name: str, attached: int) -> ListenerStatus:
    return ListenerStatus(name, ("HTTPRoute",),
                          (Condition("Accepted", "True"), Condition("ResolvedRefs", "True")),
                          attached)


def _header_case(path: str, headers: Mapping[str, str], seen: Mapping[str, str],
                 absent: tuple[str, ...] = ()) -> ExpectedResponse:
    return ExpectedResponse(
        request=Request(path=path, headers=dict(headers)),
        expected_request=ExpectedRequest(path=path, headers=dict(seen), absent_headers=absent),
        backend=V1, namespace=INFRA)


HOSTNAME_INTERSECTION = NN("httproute-hostname-intersection")
HOSTNAME_INTERSECTION_ALL = NN("httproute-hostname-intersection-all")
_INTERSECTING = ("specific-host-matches-listener-specific-host",
                 "specific-host-matches-listener-wildcard-host",
                 "wildcard-host-matches-listener-specific-host",
                 "wildcard-host-matches-listener-wildcard-host")

GATEWAY_HTTP_CORE_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "GatewayWithAttachedRoutes",
        "A Gateway in the gateway-conformance-infra namespace should be attached to "
        "routes.", CORE, ("tests/gateway-with-attached-routes.yaml",),
        (Subtest("Gateway listener should have one valid http routes attached", (
            GatewayListeners(NN("gateway-with-one-attached-route"), (
                ListenerStatus("http", ("HTTPRoute",), ACCEPTED_AND_RESOLVED, 1),)),)),
         Subtest("Gateway listener should have two valid http routes attached", (
             GatewayListeners(NN("gateway-with-two-attached-routes"), (
                 ListenerStatus("http", ("HTTPRoute",), ACCEPTED_AND_RESOLVED, 2),)),
             RouteCondition(NN("http-route-not-accepted"), NN("gateway-with-two-attached-routes"),
                            Condition("Accepted", "False", "NoMatchingListenerHostname")))),
         Subtest("Gateway listener should have AttachedRoutes set even when Gateway has "
                 "unresolved refs", (
                     GatewayListeners(NN("unresolved-gateway-with-one-attached-unresolved-route"), (
                         ListenerStatus("tls", ("HTTPRoute",), (
                             Condition("Programmed", "False"),
                             Condition("ResolvedRefs", "False")), 1),)),
                     RouteCondition(NN("http-route-4"),
                                    NN("unresolved-gateway-with-one-attached-unresolved-route"),
                                    Condition("ResolvedRefs", "False"))))),
        upstream_file="gateway-with-attached-routes.go"),
    GatewayConformanceTest(
        "HTTPRouteCrossNamespace", "A single HTTPRoute in the gateway-conformance-web-backend "
        "namespace should attach to Gateway in another namespace", CORE,
        ("tests/httproute-cross-namespace.yaml",),
        (accepted("cross-namespace", GatewayRef("backend-namespaces"),
                  route_namespace=WEB_NAMESPACE),
         resolved(NN("cross-namespace", WEB_NAMESPACE), NN("backend-namespaces")),
         Subtest("Simple HTTP request should reach web-backend", (GatewayExchanges(
             GatewayRef("backend-namespaces"),
             (to("/", "web-backend", namespace=WEB_NAMESPACE, status=200),)),))),
        upstream_file="httproute-cross-namespace.go"),
    simple("HTTPRouteExactPathMatching",
           "A single HTTPRoute with exact path matching for different backends",
           "exact-matching",
           (to("/one", V1), to("/two", V2), code("/", 404), code("/one/example", 404),
            code("/two/", 404), code("/Two", 404))),
    simple("HTTPRouteHeaderMatching",
           "A single HTTPRoute with header matching for different backends", "header-matching",
           (to("/", V1, headers={"Version": "one"}), to("/", V2, headers={"Version": "two"}),
            to("/", V1, headers={"Version": "two", "Color": "orange"}),
            to("/", V2, headers={"Version": "two", "Color": "blue"}),
            code("/", 404, headers={"Color": "orange"}),
            code("/", 404, headers={"Some-Other-Header": "one"}),
            to("/", V1, headers={"Color": "blue"}), to("/", V1, headers={"Color": "green"}),
            to("/", V2, headers={"Color": "red"}), to("/", V2, headers={"Color": "yellow"}),
            code("/", 404, headers={"Color": "purple"}))),
    GatewayConformanceTest(
        "HTTPRouteHostnameIntersection", "HTTPRoutes should attach to listeners only if they "
        "have intersecting hostnames, and should accept requests only for the intersecting "
        "hostnames", CORE, ("tests/httproute-hostname-intersection.yaml",),
        (NamespacesReady(),  # the manifest adds a Gateway in the infra namespace
         Subtest("HTTPRoutes that do intersect with listener hostnames", (
             RoutesAccepted(GatewayRef(HOSTNAME_INTERSECTION.name),
                            tuple(NN(name) for name in _INTERSECTING)),
             *(resolved(NN(name), HOSTNAME_INTERSECTION) for name in _INTERSECTING),
             GatewayExchanges(GatewayRef(HOSTNAME_INTERSECTION.name), (
                 # specific-host-matches-listener-specific-host; the Host's port is ignored
                 to("/s1", V1, host="very.specific.com"),
                 to("/s1", V1, host="very.specific.com:1234"),
                 code("/s1", 404, host="non.matching.com"),
                 code("/s1", 404, host="foo.nonmatchingwildcard.io"),
                 code("/s1", 404, host="foo.wildcard.io"),
                 code("/non-matching-prefix", 404, host="very.specific.com"),
                 # specific-host-matches-listener-wildcard-host
                 to("/s2", V2, host="foo.wildcard.io"), to("/s2", V2, host="bar.wildcard.io"),
                 to("/s2", V2, host="foo.bar.wildcard.io"),
                 code("/s2", 404, host="non.matching.com"),
                 code("/s2", 404, host="wildcard.io"),
                 code("/s2", 404, host="very.specific.com"),
                 code("/non-matching-prefix", 404, host="foo.wildcard.io"),
                 # wildcard-host-matches-listener-specific-host
                 to("/s3", V3, host="very.specific.com"),
                 code("/s3", 404, host="non.matching.com"),
                 code("/s3", 404, host="foo.specific.com"),
                 code("/s3", 404, host="foo.wildcard.io"),
                 code("/non-matching-prefix", 404, host="very.specific.com"),
                 # wildcard-host-matches-listener-wildcard-host
                 to("/s4", V1, host="foo.anotherwildcard.io"),
                 to("/s4", V1, host="bar.anotherwildcard.io"),
                 to("/s4", V1, host="foo.bar.anotherwildcard.io"),
                 code("/s4", 404, host="anotherwildcard.io"),
                 code("/s4", 404, host="foo.wildcard.io"),
                 code("/s4", 404, host="very.specific.com"),
                 code("/non-matching-prefix", 404, host="foo.anotherwildcard.io"))))),
         Subtest("HTTPRoutes that do not intersect with listener hostnames", (
             RoutesAccepted(GatewayRef(HOSTNAME_INTERSECTION.name)),
             RouteParents(NN("no-intersecting-hosts"), (ParentStatus(
                 HOSTNAME_INTERSECTION.name, INFRA,
                 conditions=(Condition("Accepted", "False", "NoMatchingListenerHostname"),)),)),
             GatewayExchanges(GatewayRef(HOSTNAME_INTERSECTION.name), (
                 code("/s5", 404, host="specific.but.wrong.com"),
                 code("/s5", 404, host="wildcard.io"))))),
         Subtest("HTTPRoutes have to be counted in AttachedRoutes only if they are Accepted", (
             GatewayListeners(HOSTNAME_INTERSECTION, (
                 _listener("listener-1", 2), _listener("listener-2", 1),
                 _listener("listener-3", 1))),)),
         Subtest("HTTPRoutes intersects with an unspecified hostname listener", (
             RoutesAccepted(GatewayRef(HOSTNAME_INTERSECTION_ALL.name),
                            (NN("httproute-hostname-intersection-all"),)),
             resolved(NN("httproute-hostname-intersection-all"), HOSTNAME_INTERSECTION_ALL),
             GatewayExchanges(GatewayRef(HOSTNAME_INTERSECTION_ALL.name), (
                 to("/", V2, host="first.com"), to("/", V2, host="sub.first.com"),
                 to("/", V2, host="second.com"), to("/", V2, host="sub.second.com"),
                 # not among the HTTPRoute's hostnames (the Go cases set Namespace too)
                 code("/", 404, host="third.com", namespace=INFRA),
                 code("/", 404, host="sub.third.com", namespace=INFRA)))))),
        upstream_file="httproute-hostname-intersection.go"),
    GatewayConformanceTest(
        "HTTPRouteHTTPSListener", "HTTPRoute attaches to a Gateway's HTTPS listener in the "
        "same namespace", CORE, ("tests/httproute-https-listener.yaml",),
        (RoutesAccepted(GatewayRef("same-namespace-with-https-listener"),
                        (NN("httproute-https-test"), NN("httproute-https-test-no-hostname"))),
         resolved(NN("httproute-https-test"), NN("same-namespace-with-https-listener")),
         resolved(NN("httproute-https-test-no-hostname"),
                  NN("same-namespace-with-https-listener")),
         # the client trusts the certificate of Secret tls-validity-checks-certificate (it must
         # hold one); SNI and Host are each case's host
         GatewayExchanges(GatewayRef("same-namespace-with-https-listener"), (
             to("/", V1, host="example.org", status=200),
             code("/", 404, host="unknown-example.org", namespace=INFRA),
             to("/", V2, host="second-example.org", status=200)),
             scheme="https", server_cert=NN("tls-validity-checks-certificate"))),
        upstream_file="httproute-https-listener.go"),
    _rejected("HTTPRouteInvalidBackendRefUnknownKind", "A single HTTPRoute in the "
              "gateway-conformance-infra namespace should set a ResolvedRefs status False with "
              "reason InvalidKind when attempting to bind to a Gateway in the same namespace if "
              "the route has a BackendRef that points to an unknown Kind.",
              "httproute-invalid-backendref-unknown-kind", NN("invalid-backend-ref-unknown-kind"),
              Condition("ResolvedRefs", "False", "InvalidKind"),
              ("HTTPRoute with Invalid Kind has a ResolvedRefs Condition with status False and "
               "Reason InvalidKind", "HTTP Request to invalid backend with invalid Kind receives "
               "a 500")),
    _rejected("HTTPRouteInvalidCrossNamespaceBackendRef", "A single HTTPRoute in the "
              "gateway-conformance-infra namespace should set a ResolvedRefs status False with "
              "reason RefNotPermitted when attempting to bind to a Gateway in the same namespace "
              "if the route has a BackendRef Service in the gateway-conformance-web-backend "
              "namespace and a ReferenceGrant granting permission to route to that Service does "
              "not exist", "httproute-invalid-cross-namespace-backend-ref",
              NN("invalid-cross-namespace-backend-ref"),
              Condition("ResolvedRefs", "False", "RefNotPermitted"),
              ("HTTPRoute with a cross-namespace BackendRef and no ReferenceGrant has a "
               "ResolvedRefs Condition with status False and Reason RefNotPermitted",
               "HTTP Request to invalid cross-namespace backend must receive a 500"),
              ("Gateway", "HTTPRoute", "ReferenceGrant")),
    GatewayConformanceTest(
        "HTTPRouteInvalidCrossNamespaceParentRef",
        "A single HTTPRoute in the gateway-conformance-web-backend namespace should "
        "fail to attach to a Gateway in another namespace that it is not allowed to",
        CORE, ("tests/httproute-invalid-cross-namespace-parent-ref.yaml",),
        # the Go test checks ResolvedRefs=True first, with no Accepted wait
        (resolved(NN("invalid-cross-namespace-parent-ref", WEB_NAMESPACE), SAME),
         Subtest("HTTPRoute should have an Accepted: false condition with reason "
                 "NotAllowedByListeners", (RouteCondition(
                     NN("invalid-cross-namespace-parent-ref", WEB_NAMESPACE), SAME,
                     Condition("Accepted", "False", "NotAllowedByListeners")),)),
         Subtest("Route should not have Parents set in status", (
             RouteNoAcceptedParents(NN("invalid-cross-namespace-parent-ref", WEB_NAMESPACE)),)),
         Subtest("Gateway should have 0 Routes attached", (GatewayZeroRoutes(SAME),))),
        upstream_file="httproute-invalid-cross-namespace-parent-ref.go"),
    _rejected("HTTPRouteInvalidNonExistentBackendRef", "A single HTTPRoute in the "
              "gateway-conformance-infra namespace should set a ResolvedRefs status False with "
              "reason BackendNotFound and return 500 when binding to a Gateway in the same "
              "namespace if the route has a BackendRef Service that does not exist",
              "httproute-invalid-nonexistent-backendref", NN("invalid-nonexistent-backend-ref"),
              Condition("ResolvedRefs", "False", "BackendNotFound"),
              ("HTTPRoute with only a nonexistent BackendRef has a ResolvedRefs Condition with "
               "status False and Reason BackendNotFound",
               "HTTP Request to invalid nonexistent backend receive a 500")),
    GatewayConformanceTest(
        "HTTPRouteInvalidParentRefNotMatchingSectionName",
        "A single HTTPRoute in the gateway-conformance-infra namespace should set the "
        "Accepted status to False with reason NoMatchingParent when attempting to bind "
        "to a Gateway that does not have a matching SectionName.", CORE,
        ("tests/httproute-invalid-parentref-not-matching-section-name.yaml",),
        (Subtest("HTTPRoute with no matching sectionName in ParentRef has an Accepted Condition "
                 "with status False and Reason NoMatchingParent", (RouteCondition(
                     NN("httproute-listener-not-matching-section-name"), SAME,
                     Condition("Accepted", "False", "NoMatchingParent")),)),
         Subtest("Route should not have Parents accepted in status", (RouteNoAcceptedParents(
             NN("httproute-listener-not-matching-section-name")),)),
         Subtest("Gateway should have 0 Routes attached", (GatewayZeroRoutes(SAME),))),
        upstream_file="httproute-invalid-parentref-not-matching-section-name.go"),
    GatewayConformanceTest(
        "HTTPRouteInvalidReferenceGrant",
        "A single HTTPRoute in the gateway-conformance-infra namespace, with a "
        "backendRef in another namespace without valid ReferenceGrant, should have the "
        "ResolvedRefs condition set to False and not forward HTTP requests to any "
        "backend",
        ("Gateway", "HTTPRoute", "ReferenceGrant"),
        ("tests/httproute-invalid-reference-grant.yaml",),
        (accepted("reference-grant"),
         Subtest("HTTPRoute with BackendRef in another namespace and no ReferenceGrant covering "
                 "the Service has a ResolvedRefs Condition with status False and Reason "
                 "RefNotPermitted", (RouteCondition(
                     NN("reference-grant"), SAME,
                     Condition("ResolvedRefs", "False", "RefNotPermitted")),)),
         # Backend and Namespace are set, but with a 500 CompareRoundTrip never reaches them
         Subtest("Simple HTTP request not should reach web-backend", (GatewayExchanges(
             SAME_NAMESPACE, (to("/", "web-backend", method="GET", namespace=WEB_NAMESPACE,
                                 status=500),)),))),
        upstream_file="httproute-invalid-reference-grant.go"),
    GatewayConformanceTest(
        "HTTPRouteListenerHostnameMatching", "Multiple HTTP listeners with the same port and "
        "different hostnames, each with a different HTTPRoute", CORE,
        ("tests/httproute-listener-hostname-matching.yaml",),
        (NamespacesReady(),
         accepted("backend-v1", GatewayRef("httproute-listener-hostname-matching",
                                           listeners=("listener-1",))),
         resolved(NN("backend-v1"), NN("httproute-listener-hostname-matching")),
         accepted("backend-v2", GatewayRef("httproute-listener-hostname-matching",
                                           listeners=("listener-2",))),
         resolved(NN("backend-v2"), NN("httproute-listener-hostname-matching")),
         accepted("backend-v3", GatewayRef("httproute-listener-hostname-matching",
                                           listeners=("listener-3", "listener-4"))),
         resolved(NN("backend-v3"), NN("httproute-listener-hostname-matching")),
         # the address of the last wait: listener-3's
         GatewayExchanges(GatewayRef("httproute-listener-hostname-matching",
                                     listeners=("listener-3", "listener-4")), (
             to("/", V1, host="bar.com"), to("/", V2, host="foo.bar.com"),
             to("/", V3, host="baz.bar.com"), to("/", V3, host="boo.bar.com"),
             to("/", V3, host="multiple.prefixes.bar.com"),
             to("/", V3, host="multiple.prefixes.foo.com"),
             code("/", 404, host="foo.com"), code("/", 404, host="no.matching.host")))),
        upstream_file="httproute-listener-hostname-matching.go"),
    GatewayConformanceTest(
        "HTTPRouteMatchingAcrossRoutes", "Two HTTPRoutes with path matching for different "
        "backends", CORE, ("tests/httproute-matching-across-routes.yaml",),
        (accepted("matching-part1", SAME_NAMESPACE, "matching-part2"),
         resolved(NN("matching-part1"), SAME), resolved(NN("matching-part2"), SAME),
         GatewayExchanges(SAME_NAMESPACE, (
             to("/", V1, host="example.com"), to("/example", V1, host="example.com"),
             to("/example", V1, host="example.net"),
             to("/example", V1, host="example.com", headers={"Version": "one"}),
             to("/v2", V2, host="example.com"),
             to("/v2", V1, host="example.net"),  # v2 matches are limited to example.com
             to("/v2/example", V2, host="example.com"),
             to("/", V2, host="example.com", headers={"Version": "two"})))),
        upstream_file="httproute-matching-across-routes.go"),
    simple("HTTPRouteMatching", "A single HTTPRoute with path and header matching for "
           "different backends", "matching",
           (to("/", V1), to("/example", V1), to("/", V1, headers={"Version": "one"}),
            to("/v2", V2), to("/v2/example", V2), to("/", V2, headers={"Version": "two"}),
            to("/v2/", V2), to("/v2example", V1), to("/foo/v2/example", V1))),
    GatewayConformanceTest(
        "HTTPRouteMultipleGateways",
        "An HTTPRoute that is attached to multiple Gateways receives traffic from each "
        "Gateway independently, and shared routes are accessible via all parent "
        "Gateways while dedicated routes are only accessible via their respective "
        "parent.", CORE, ("tests/httproute-multiple-gateways.yaml",),
        (Subtest("Gateway same-namespace", (
            accepted("multiple-gateways-shared-route", SAME_NAMESPACE,
                     "same-namespace-dedicated-route"),
            Subtest("shared route is accessible and routed to infra-backend-v1", (
                GatewayExchanges(SAME_NAMESPACE, (to("/shared", V1, status=200),)),)),
            Subtest("dedicated route is accessible and routed to infra-backend-v2", (
                GatewayExchanges(SAME_NAMESPACE, (to("/", V2, status=200),)),)))),
         Subtest("Gateway all-namespaces", (
             accepted("multiple-gateways-shared-route", GatewayRef("all-namespaces"),
                      "all-namespaces-dedicated-route"),
             Subtest("shared route is accessible and routed to infra-backend-v1", (
                 GatewayExchanges(GatewayRef("all-namespaces"),
                                  (to("/shared", V1, status=200),)),)),
             Subtest("dedicated route is accessible and routed to infra-backend-v3", (
                 GatewayExchanges(GatewayRef("all-namespaces"),
                                  (to("/", V3, status=200),)),))))),
        upstream_file="httproute-multiple-gateways.go"),
    GatewayConformanceTest(
        "HTTPRouteObservedGenerationBump", "A HTTPRoute in the gateway-conformance-infra "
        "namespace should update the observedGeneration in all of it's Status.Conditions "
        "after an update to the spec", CORE, ("tests/httproute-observed-generation-bump.yaml",),
        (Subtest("observedGeneration should increment", (
            NamespacesReady(),
            LatestConditions("HTTPRoute", NN("observed-generation-bump")),
            Update("HTTPRoute", NN("observed-generation-bump"),
                   {"spec.rules[0].backendRefs[0].name": V2},
                   "a merge patch of the first rule's first backendRef's name"),
            RouteCondition(NN("observed-generation-bump"), SAME, Condition("Accepted", "True")),
            resolved(NN("observed-generation-bump"), SAME),
            LatestConditions("HTTPRoute", NN("observed-generation-bump")),
            # the Go test then requires metadata.generation to have changed
            ObservedGenerationBumped("HTTPRoute", NN("observed-generation-bump")))),),
        upstream_file="httproute-observed-generation-bump.go"),
    simple("HTTPRouteNoBackendRefs",
        "HTTPRoute rules with omitted or empty backendRefs explicitly respond with 500",
        "omitted-backendrefs",
           (to("/forward", V1), code("/omitted-no-forward", 500),
            code("/empty-no-forward", 500))),
    GatewayConformanceTest(
        "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant",
        "A single HTTPRoute in the gateway-conformance-infra namespace should attach "
        "to a Gateway in the same namespace if the route has a backendRef Service in "
        "the gateway-conformance-app-backend namespace and a ReferenceGrant exists but "
        "does not grant permission to route to that specific Service",
        ("Gateway", "HTTPRoute", "ReferenceGrant"),
        ("tests/httproute-partially-invalid-via-invalid-reference-grant.yaml",),
        (accepted("invalid-reference-grant"),
         Subtest("HTTPRoute with BackendRef in another namespace and no ReferenceGrant covering "
                 "the Service has a ResolvedRefs Condition with status False and Reason "
                 "RefNotPermitted", (RouteCondition(
                     NN("invalid-reference-grant"), SAME,
                     Condition("ResolvedRefs", "False", "RefNotPermitted")),)),
         Subtest("HTTP Request to invalid backend with missing referenceGrant should receive "
                 "a 500", (GatewayExchanges(SAME_NAMESPACE, (code("/v2", 500, method="GET"),)),)),
         Subtest("HTTP Request to valid sibling backend should succeed", (GatewayExchanges(
             SAME_NAMESPACE, (to("/", "app-backend-v1", method="GET", namespace=APP_NAMESPACE,
                                 status=200),)),))),
        upstream_file="httproute-partially-invalid-via-invalid-reference-grant.go"),
    simple("HTTPRoutePathMatchOrder",
        "An HTTPRoute where there are multiple matches routing to any given backend "
        "follows match order precedence", "path-matching-order",
           (to("/match/exact/one", V3), to("/match/exact", V2), to("/match", V1),
            to("/match/prefix/one/any", V2), to("/match/prefix/any", V1),
            to("/match/any", V3))),
    simple("HTTPRouteRedirectHostAndStatus", "An HTTPRoute with hostname and statusCode "
           "redirect filters", "redirect-host-and-status",
           tuple(ExpectedResponse(request=Request(path=path, unfollow_redirect=True),
                                  response=Response(status_code=status),
                                  redirect_request=RedirectRequest(host="example.org"))
                 for path, status in (("/hostname-redirect", 302), ("/host-and-status", 301)))),
    GatewayConformanceTest(
        "HTTPRouteReferenceGrant", "A single HTTPRoute in the gateway-conformance-infra "
        "namespace, with a backendRef in the gateway-conformance-web-backend namespace, should "
        "attach to Gateway in the gateway-conformance-infra namespace",
        ("Gateway", "HTTPRoute", "ReferenceGrant"), ("tests/httproute-reference-grant.yaml",),
        (accepted("reference-grant"), resolved(NN("reference-grant"), SAME),
         Subtest("Simple HTTP request should reach web-backend", (GatewayExchanges(
             SAME_NAMESPACE, (to("/", "web-backend", method="GET", namespace=WEB_NAMESPACE,
                                 status=200),)),)),
         Delete("ReferenceGrant", NN("reference-grant", WEB_NAMESPACE)),
         Subtest("Simple HTTP request should return 500 after deleting the relevant reference "
                 "grant", (GatewayExchanges(SAME_NAMESPACE, (code("/", 500, method="GET"),)),))),
        upstream_file="httproute-reference-grant.go"),
    simple("HTTPRouteRequestHeaderModifier", "An HTTPRoute has request header modifier "
           "filters applied correctly", "request-header-modifier", (
               _header_case("/set", {"Some-Other-Header": "val"},
                            {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
               _header_case("/set", {"Some-Other-Header": "val",
                                     "X-Header-Set": "some-other-value"},
                            {"Some-Other-Header": "val", "X-Header-Set": "set-overwrites-values"}),
               _header_case("/add", {"Some-Other-Header": "val"},
                            {"Some-Other-Header": "val", "X-Header-Add": "add-appends-values"}),
               _header_case("/add", {"Some-Other-Header": "val",
                                     "X-Header-Add": "some-other-value"},
                            {"Some-Other-Header": "val",
                             "X-Header-Add": "some-other-value,add-appends-values"}),
               _header_case("/remove", {"X-Header-Remove": "val"}, {}, ("X-Header-Remove",)),
               _header_case("/multiple", {"X-Header-Set-2": "set-val-2",
                                          "X-Header-Add-2": "add-val-2",
                                          "X-Header-Remove-2": "remove-val-2",
                                          "Another-Header": "another-header-val"},
                            {"X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2",
                             "X-Header-Add-1": "header-add-1",
                             "X-Header-Add-2": "add-val-2,header-add-2",
                             "X-Header-Add-3": "header-add-3",
                             "Another-Header": "another-header-val"},
                            ("X-Header-Remove-1", "X-Header-Remove-2")),
               # the filter uses canonical header names, the request lowercase ones
               _header_case("/case-insensitivity", {"x-header-set": "original-val-set",
                                                    "x-header-add": "original-val-add",
                                                    "x-header-remove": "original-val-remove",
                                                    "Another-Header": "another-header-val"},
                            {"X-Header-Set": "header-set",
                             "X-Header-Add": "original-val-add,header-add",
                             "Another-Header": "another-header-val"},
                            ("x-header-remove", "X-Header-Remove")))),
    GatewayConformanceTest(
        "HTTPRouteServiceTypes", "A single HTTPRoute should be able to route traffic to various "
        "service type backends", CORE, ("tests/httproute-service-types.yaml",),
        (accepted("service-types"), resolved(NN("service-types"), SAME),
         # setupEndpointSlices: the Go test lists the Pods of Deployment infra-backend-v1 and
         # fills the manifest's EndpointSlices manual-endpointslices-ip4/-ip6 and
         # headless-manual-endpointslices-ip4/-ip6 with their addresses (one endpoint per pod
         # IP of the slice's family, Ready/Serving, not Terminating, targetRef the Pod);
         # slices with no address of their family are left alone
         *(Update("EndpointSlice", NN(f"{prefix}-{family}"),
                  {"endpoints": "{pods of Deployment infra-backend-v1, " + family + " addresses}"},
                  "setupEndpointSlices")
           for family in ("ip4", "ip6")
           for prefix in ("manual-endpointslices", "headless-manual-endpointslices")),
         GatewayExchanges(SAME_NAMESPACE, tuple(
             to("/" + path, V1, status=200)
             for path in ("manual-endpointslices", "headless-manual-endpointslices",
                          "headless"))),
         ),
        upstream_file="httproute-service-types.go"),
    GatewayConformanceTest(
        "HTTPRouteSimpleSameNamespace",
        "A single HTTPRoute in the gateway-conformance-infra namespace attaches to a Gateway in "
        "the same namespace", CORE, ("tests/httproute-simple-same-namespace.yaml",),
        (accepted("gateway-conformance-infra-test"),
         resolved(NN("gateway-conformance-infra-test"), SAME),
         Subtest("Simple HTTP request should reach infra-backend", (GatewayExchanges(
             SAME_NAMESPACE, (to("/", V1, status=200),)),))),
        upstream_file="httproute-simple-same-namespace.go"),
    GatewayConformanceTest(
        "HTTPRouteWeight", "An HTTPRoute with weighted backends", CORE,
        ("tests/httproute-weight.yaml",),
        (accepted("weighted-backends"), resolved(NN("weighted-backends"), SAME),
         Subtest("Requests should have a distribution that matches the weight", (
             GatewayWeighted(SAME_NAMESPACE, ExpectedResponse(
                 request=Request(path="/"), response=Response(status_codes=(200,)),
                 namespace=INFRA), {V1: 0.7, V2: 0.3, V3: 0.0}),)),),
        upstream_file="httproute-weight.go"),
)
