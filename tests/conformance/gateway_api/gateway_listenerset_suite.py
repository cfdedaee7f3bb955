"""The ListenerSet tests of the conformance suite (feature ListenerSet, extended in every gateway
profile; the HTTPRoute and TLSRoute ones only in GATEWAY-HTTP / GATEWAY-TLS), translated by hand
from `conformance/tests/listenerset-*.go` at the commit in upstream/UPSTREAM. A ListenerSet adds
listeners to a Gateway that allows it (spec.allowedListeners); routes attach to it as a parent
of kind ListenerSet."""

from __future__ import annotations

from collections.abc import Mapping

from tests.conformance.gateway_api.expectations import ExpectedResponse
from tests.conformance.gateway_api.gateway_http_suite import code, to
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    V1,
    V2,
    V3,
    GatewayAddress,
    GatewayConformanceTest,
    GatewayExchanges,
    Subtest,
)
from tests.conformance.gateway_api.status import (
    NN,
    AttachedListeners,
    Condition,
    GatewayCondition,
    GatewayListeners,
    GatewayRef,
    ListenersConditions,
    ListenerStatus,
    NamespacesReady,
    ParentStatus,
    RouteCondition,
    RouteParents,
    RoutesAccepted,
)

LS = "ListenerSet"
READY = (Condition("ResolvedRefs", "True"), Condition("Accepted", "True"),
         Condition("Programmed", "True"))  # generateAcceptedListenerConditions
GATEWAY_ACCEPTED = Condition("Accepted", "True")


def gateway_ok(gateway: str, attached: int | None) -> tuple[object, ...]:
    """The Gateway Accepted (any reason) and, when given, its attachedListeners count."""
    steps: tuple[object, ...] = (GatewayCondition(NN(gateway), GATEWAY_ACCEPTED),)
    if attached is not None:
        steps += (AttachedListeners(NN(gateway), attached),)
    return steps


def ls_state(name: str, status: str, reason: str, namespace: str = INFRA
             ) -> tuple[GatewayCondition, GatewayCondition]:
    """ListenerSetMustHaveCondition for Accepted and Programmed with the same status: False
    with the same reason for both; True with `reason` for Accepted ("" is any) and Programmed
    for Programmed."""
    accepted_reason = reason
    programmed_reason = "Programmed" if status == "True" else reason
    return (GatewayCondition(NN(name, namespace), Condition("Accepted", status, accepted_reason),
                             LS),
            GatewayCondition(NN(name, namespace),
                             Condition("Programmed", status, programmed_reason), LS))


def ls_listeners(name: str, conditions: tuple[Condition, ...], *listeners: str,
                 namespace: str = INFRA) -> ListenersConditions:
    return ListenersConditions(NN(name, namespace), conditions, listeners, LS)


def ls_status(name: str, *listeners: tuple[str, int], namespace: str = INFRA) -> GatewayListeners:
    """ListenerSetStatusMustHaveListeners: each listener supports HTTPRoute
    (generateSupportedRouteKinds), with READY and its attachedRoutes."""
    return GatewayListeners(NN(name, namespace), tuple(
        ListenerStatus(listener, ("HTTPRoute",), READY, attached)
        for listener, attached in listeners), LS)


def ls_accepted(listener_set: str, *routes: NN, namespace: str = INFRA) -> RoutesAccepted:
    """RoutesAndParentMustBeAccepted(NewResourceRef(ListenerSet, ...), HTTPRoute, routes...)."""
    return RoutesAccepted(GatewayRef(listener_set, namespace, kind=LS), routes)


def _not_allowed(short: str, description: str, name: str, gateway: str,
                 listener_set: str) -> GatewayConformanceTest:
    return GatewayConformanceTest(
        short, description, ("Gateway", "ListenerSet"), (f"tests/{name}.yaml",),
        (NamespacesReady(), *gateway_ok(gateway, 0),  # type: ignore[arg-type]
         *ls_state(listener_set, "False", "NotAllowed")),
        upstream_file=f"{name}.go")


def _conflict(short: str, name: str, what: str) -> GatewayConformanceTest:
    """ListenerSetHostnameConflict / ...ProtocolConflict: the same shape, `what` names it."""
    reason = f"{what.capitalize()}Conflict"
    conflicted = (Condition("Accepted", "False", reason), Condition("Programmed", "False", reason),
                  Condition("Conflicted", "True", reason))
    gateway = f"gateway-with-listenerset-{what}-conflict"
    with_gateway = f"{what}-conflict-with-gateway-listener"
    with_ls = f"{what}-conflict-with-listener-set-listener"
    return GatewayConformanceTest(
        short, "Validate Listener Precedence when a ListenerSet listener has a "
        f"{what} conflict", ("Gateway", "ListenerSet"), (f"tests/{name}.yaml",),
        (NamespacesReady(), GatewayCondition(NN(gateway), GATEWAY_ACCEPTED),
         ListenersConditions(NN(gateway), READY, ("gateway-listener",)),
         ListenersConditions(NN(gateway), READY, (with_gateway,)),
         AttachedListeners(NN(gateway), 2),
         *ls_state(f"listenerset-with-{what}-conflict-with-gateway-1", "True", ""),
         ls_listeners(f"listenerset-with-{what}-conflict-with-gateway-1", READY,
                      "listener-set-1-listener"),
         ls_listeners(f"listenerset-with-{what}-conflict-with-gateway-1", conflicted,
                      with_gateway),
         ls_listeners(f"listenerset-with-{what}-conflict-with-gateway-1", READY, with_ls),
         *ls_state(f"listenerset-with-{what}-conflict-with-gateway-2", "False",
                   "ListenersNotValid"),
         ls_listeners(f"listenerset-with-{what}-conflict-with-gateway-2", conflicted,
                      with_gateway),
         *ls_state(f"listenerset-with-{what}-conflict-with-listener-set-1", "True", ""),
         ls_listeners(f"listenerset-with-{what}-conflict-with-listener-set-1", READY,
                      "listener-set-2-listener"),
         ls_listeners(f"listenerset-with-{what}-conflict-with-listener-set-1", conflicted,
                      with_ls),
         *ls_state(f"listenerset-with-{what}-conflict-with-listener-set-2", "False",
                   "ListenersNotValid"),
         ls_listeners(f"listenerset-with-{what}-conflict-with-listener-set-2", conflicted,
                      with_ls)),
        upstream_file=f"{name}.go")


def _matrix(paths: Mapping[str, Mapping[str, str]], hosts: tuple[str, ...]
            ) -> tuple[ExpectedResponse, ...]:
    """Per path (in order), per host (in order): the backend named, else 404."""
    return tuple(to(path, answers[host], host=host) if host in answers else
                 code(path, 404, host=host)
                 for path, answers in paths.items() for host in hosts)


_G1, _G2 = "gateway-listener-1.com", "gateway-listener-2.com"
_L11 = "listener-set-http-routing-1-listener-1.com"
_L12 = "listener-set-http-routing-1-listener-2.com"
_L21 = "listener-set-http-routing-2-listener-1.com"
_L22 = "listener-set-http-routing-2-listener-2.com"
_ROUTING = _matrix({
    "/route": dict.fromkeys((_G1, _G2, _L11, _L12, _L21, _L22), V1),
    "/gateway-route": {_G1: V2, _G2: V2},
    "/gateway-section-route": {_G1: V3},
    "/listener-set-http-routing-1-route": {_L11: V2, _L12: V2},
    "/listener-set-http-routing-1-section-route": {_L11: V3},
    "/listener-set-http-routing-2-route": {_L21: V2, _L22: V2},
}, (_G1, _G2, _L11, _L12, _L21, _L22))

_ALL, _SAME_HOST = ("listener-set-listener-allowed-routes-all.com",
                    "listener-set-listener-allowed-routes-same.com")
_SELECTOR = "listener-set-listener-allowed-routes-selector.com"
_ALLOWED_ROUTES = "gateway-with-listener-sets-test-allowed-routes"
_CROSS_NS = "gateway-api-ls-cross-ns"
_DUAL_GW = GatewayRef("gateway-dual-parentref", listeners=("gw-dual-parentref-listener",))

GATEWAY_LISTENERSET_TESTS: tuple[GatewayConformanceTest, ...] = (
    _not_allowed("ListenerSetAllowedNamespaceNone",
                 "Listener Sets are not allowed on the Gateway when `allowedListeners` is set to "
                 "`None`", "listenerset-allowed-namespace-none",
                 "gateway-does-not-allow-listenerset", "listenerset-not-allowed"),
    _not_allowed("ListenerSetDefaultNotAllowed",
                 "Listener Sets are not allowed on the Gateway by default (i.e. when "
                 "`allowedListeners` is not set)", "listenerset-default-not-allowed",
                 "gateway-default-does-not-allow-listenerset", "listenerset-default-not-allowed"),
    GatewayConformanceTest(
        "ListenerSetAllowedNamespaceSame",
        "ListenerSets in the same namespace as the Gateway are allowed when "
        "`allowedListeners` is set to `Same`", ("Gateway", "ListenerSet"),
        ("tests/listenerset-allowed-namespace-same.yaml",),
        (NamespacesReady(),
         *gateway_ok("gateway-allows-listenerset-in-same-namespace", 1),  # type: ignore[arg-type]
         *ls_state("listenerset-in-same-namespace", "True", "Accepted"),
         ls_listeners("listenerset-in-same-namespace", READY,
                      "listenerset-in-same-namespace-listener"),
         *ls_state("listenerset-in-different-namespace", "False", "NotAllowed",
                   "gateway-api-listenerset-not-allowed-ns")),
        upstream_file="listenerset-allowed-namespace-same.go"),
    GatewayConformanceTest(
        "ListenerSetAllowedNamespaceSelector",
        "ListenerSets in the namespaces that match the labels are allowed when "
        "`allowedListeners` is set to `Selector`", ("Gateway", "ListenerSet"),
        ("tests/listenerset-allowed-namespace-selector.yaml",),
        (NamespacesReady(),
         *gateway_ok("gateway-allows-listenerset-in-selected-namespace",  # type: ignore[arg-type]
                     1),
         *ls_state("listenerset-in-selected-namespace", "True", "Accepted",
                   "gateway-api-listenerset-selector-allowed-ns"),
         ls_listeners("listenerset-in-selected-namespace", READY,
                      "listenerset-in-selected-namespace-listener",
                      namespace="gateway-api-listenerset-selector-allowed-ns"),
         *ls_state("listenerset-not-in-selected-namespace", "False", "NotAllowed",
                   "gateway-api-listenerset-selector-not-allowed-ns")),
        upstream_file="listenerset-allowed-namespace-selector.go"),
    GatewayConformanceTest(
        "ListenerSetAllowedRoutesSupportedKinds",
        "ListenerSet listeners allow specific route kinds", ("Gateway", "ListenerSet", "TLSRoute"),
        ("tests/listenerset-allowed-routes-supported-kinds.yaml",),
        (NamespacesReady(),
         GatewayCondition(NN("gateway-with-listener-sets-test-supported-route-kinds"),
                          GATEWAY_ACCEPTED),
         ls_listeners("listenerset-test-allowed-routes-supported-kinds",
                      (Condition("ResolvedRefs", "False", "InvalidRouteKinds"),),
                      "listener-set-listener-allowed-routes-tls-only")),
        upstream_file="listenerset-allowed-routes-supported-kinds.go"),
    _conflict("ListenerSetHostnameConflict", "listenerset-hostname-conflict", "hostname"),
    _conflict("ListenerSetProtocolConflict", "listenerset-protocol-conflict", "protocol"),
    GatewayConformanceTest(
        "ListenerSetReferenceGrant",
        "ListenerSet with reference grant support", ("Gateway", "ListenerSet", "ReferenceGrant"),
        ("tests/listenerset-reference-grant.yaml",),
        (NamespacesReady(),
         GatewayCondition(NN("gateway-with-listener-sets-test-reference-grant"), GATEWAY_ACCEPTED),
         GatewayCondition(NN("listenerset-with-reference-grant"), Condition("Accepted", "True"),
                          LS),
         GatewayCondition(NN("listenerset-with-reference-grant"), Condition("Programmed", "True"),
                          LS),
         ls_listeners("listenerset-with-reference-grant", (Condition("ResolvedRefs", "True"),),
                      "listenerset-with-reference-grant-listener"),
         *ls_state("listenerset-without-reference-grant", "False", "ListenersNotValid",
                   "gateway-api-listener-sets-test-reference-grant-ns"),
         ls_listeners("listenerset-without-reference-grant",
                      (Condition("ResolvedRefs", "False", "RefNotPermitted"),),
                      "listenerset-without-reference-grant-listener",
                      namespace="gateway-api-listener-sets-test-reference-grant-ns")),
        upstream_file="listenerset-reference-grant.go"),
    GatewayConformanceTest(
        "ListenerSetGatewayParentSectionNameNotFound",
        "A Route must not be able to find a ListenerSet sectionName using a Gateway "
        "parentRef",
        ("Gateway", "ListenerSet", "HTTPRoute"),
        ("tests/listenerset-gateway-parent-section-name-not-found.yaml",),
        (NamespacesReady(),
         GatewayAddress(GatewayRef("gateway-section-name", listeners=("gw-listener",))),
         *gateway_ok("gateway-section-name", 1),  # type: ignore[arg-type]
         ls_accepted("listenerset-section-name", NN("route-via-listenerset")),
         RouteCondition(NN("route-via-gateway"), NN("gateway-section-name"),
                        Condition("Accepted", "False", "NoMatchingParent")),
         GatewayExchanges(GatewayRef("gateway-section-name", listeners=("gw-listener",)), (
             to("/goodsection", V1, host="ls-section-name.com"),
             code("/badsection", 404, host="gw-section.com")))),
        upstream_file="listenerset-gateway-parent-section-name-not-found.go"),
    GatewayConformanceTest(
        "ListenerSetDualParentRefIndependence",
        "A Route with both Gateway and ListenerSet parentRefs has independently "
        "evaluated Accepted conditions for each parentRef", ("Gateway", "ListenerSet", "HTTPRoute"),
        ("tests/listenerset-dual-parentref-independence.yaml",),
        (NamespacesReady(), GatewayAddress(_DUAL_GW),
         *gateway_ok("gateway-dual-parentref", 1),  # type: ignore[arg-type]
         ls_status("ls-dual-parentref", ("ls-dual-parentref-listener", 2)),
         Subtest("Both parentRefs are Accepted", (
             RouteCondition(NN("route-dual-parentref-both"), NN("gateway-dual-parentref"),
                            Condition("Accepted", "True")),
             RouteCondition(NN("route-dual-parentref-both"), NN("ls-dual-parentref"),
                            Condition("Accepted", "True"), parent_kind=LS),
             GatewayExchanges(_DUAL_GW, (to("/dualboth", V1, host="gw-dual.com"),
                                         to("/dualboth", V1, host="ls-dual.com"))))),
         Subtest("One of two parentRefs is Accepted", (
             RouteCondition(NN("route-dual-parentref-one"), NN("gateway-dual-parentref"),
                            Condition("Accepted", "False", "NoMatchingParent")),
             RouteCondition(NN("route-dual-parentref-one"), NN("ls-dual-parentref"),
                            Condition("Accepted", "True"), parent_kind=LS),
             ls_accepted("ls-dual-parentref", NN("route-dual-parentref-one")),
             GatewayExchanges(_DUAL_GW, (to("/dualone", V2, host="ls-dual.com"),
                                         code("/dualone", 404, host="gw-dual.com")))))),
        upstream_file="listenerset-dual-parentref-independence.go"),
    GatewayConformanceTest(
        "ListenerSetRouteStatusScopedToParentRef",
        "A Route's status.parents must contain entries only for its explicitly "
        "declared parentRefs", ("Gateway", "ListenerSet", "HTTPRoute"),
        ("tests/listenerset-route-status-scoped-to-parentref.yaml",),
        (NamespacesReady(), *gateway_ok("gateway-parentref", 1),  # type: ignore[arg-type]
         ls_status("listenerset-parentref", ("listenerset-parentref-listener", 1)),
         Subtest("Gateway-only parentRef", (
             RouteCondition(NN("route-parentref-gwonly"), NN("gateway-parentref"),
                            Condition("Accepted", "True")),
             RouteParents(NN("route-parentref-gwonly"), (ParentStatus(
                 "gateway-parentref", conditions=(Condition("Accepted", "True"),)),)))),
         Subtest("ListenerSet-only parentRef", (
             ls_accepted("listenerset-parentref", NN("route-parentref-lsonly")),
             RouteParents(NN("route-parentref-lsonly"), (ParentStatus(
                 "listenerset-parentref", conditions=(Condition("Accepted", "True"),),
                 kind=LS),))))),
        upstream_file="listenerset-route-status-scoped-to-parentref.go"),
    GatewayConformanceTest(
        "ListenerSetHTTPRouting",
        "HTTP Routing works as expected with ListenerSets", ("Gateway", "ListenerSet", "HTTPRoute"),
        ("tests/listenerset-http-routing.yaml",),
        (NamespacesReady(),
         RoutesAccepted(GatewayRef("gateway-with-listener-sets-http-routing",
                                   listeners=("gateway-listener",)),
                        (NN("attaches-to-all-listeners"), NN("gateway-route"),
                         NN("gateway-section-route"))),
         AttachedListeners(NN("gateway-with-listener-sets-http-routing"), 2),
         ls_accepted("listener-set-http-routing-1", NN("attaches-to-all-listeners"),
                     NN("listener-set-http-routing-1-route"),
                     NN("listener-set-http-routing-1-section-route")),
         ls_status("listener-set-http-routing-1", ("listener-set-http-routing-1-listener-1", 3),
                   ("listener-set-http-routing-1-listener-2", 2)),
         ls_accepted("listener-set-http-routing-2", NN("attaches-to-all-listeners"),
                     NN("listener-set-http-routing-2-route")),
         ls_status("listener-set-http-routing-2", ("listener-set-http-routing-2-listener-1", 2),
                   ("listener-set-http-routing-2-listener-2", 2)),
         GatewayExchanges(GatewayRef("gateway-with-listener-sets-http-routing",
                                     listeners=("gateway-listener",)), _ROUTING)),
        upstream_file="listenerset-http-routing.go"),
    GatewayConformanceTest(
        "ListenerSetAllowedRoutesNamespaces",
        "ListenerSet listeners allow routes from the specified namespace",
        ("Gateway", "ListenerSet", "HTTPRoute", "ReferenceGrant"),
        ("tests/listenerset-allowed-routes-namespaces.yaml",),
        (NamespacesReady(),
         GatewayAddress(GatewayRef(_ALLOWED_ROUTES, listeners=("gateway-listener",))),
         *gateway_ok(_ALLOWED_ROUTES, 2),  # type: ignore[arg-type]
         Subtest("Same-namespace ListenerSet", (
             ls_accepted("listenerset-test-allowed-routes-namespaces",
                         NN("route-in-same-namespace"),
                         NN("route-in-selected-namespace", "gateway-api-routes-allowed-ns"),
                         NN("route-not-in-selected-namespace",
                            "gateway-api-routes-not-allowed-ns")),
             ls_status("listenerset-test-allowed-routes-namespaces",
                       ("listener-set-listener-allowed-routes-all", 3),
                       ("listener-set-listener-allowed-routes-same", 1),
                       ("listener-set-listener-allowed-routes-selector", 1)),
             GatewayExchanges(GatewayRef(_ALLOWED_ROUTES, listeners=("gateway-listener",)), (
                 to("/route-in-same-namespace", V1, host=_ALL),
                 to("/route-in-selected-namespace", V2, host=_ALL),
                 to("/route-not-in-selected-namespace", V3, host=_ALL),
                 to("/route-in-same-namespace", V1, host=_SAME_HOST),
                 code("/route-in-selected-namespace", 404, host=_SAME_HOST),
                 code("/route-not-in-selected-namespace", 404, host=_SAME_HOST),
                 code("/route-in-same-namespace", 404, host=_SELECTOR),
                 to("/route-in-selected-namespace", V2, host=_SELECTOR),
                 code("/route-not-in-selected-namespace", 404, host=_SELECTOR))))),
         Subtest("Cross-namespace ListenerSet", (
             ls_accepted("listenerset-test-allowed-routes-cross-ns",
                         NN("route-in-listenerset-namespace", _CROSS_NS), namespace=_CROSS_NS),
             RouteCondition(NN("route-in-gateway-namespace"),
                            NN("listenerset-test-allowed-routes-cross-ns", _CROSS_NS),
                            Condition("Accepted", "False", "NotAllowedByListeners"),
                            parent_kind=LS),
             ls_status("listenerset-test-allowed-routes-cross-ns",
                       ("listener-set-listener-allowed-routes-cross-ns-same", 1),
                       namespace=_CROSS_NS),
             GatewayExchanges(GatewayRef(_ALLOWED_ROUTES, listeners=("gateway-listener",)), (
                 to("/route-in-listenerset-namespace", V1,
                    host="listener-set-listener-allowed-routes-cross-ns-same.com"),
                 code("/route-in-gateway-namespace", 404,
                      host="listener-set-listener-allowed-routes-cross-ns-same.com")))))),
        upstream_file="listenerset-allowed-routes-namespaces.go"),
)
