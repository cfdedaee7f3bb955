"""The translated gateway tests against what they were translated from: per profile the same
test names as upstream (the lists below, taken from the Go files' ShortName and Features at the
recorded commit, bucketed by profiles.go), metadata well-formed, every manifest vendored and
read by our loader except the recorded gaps (loader_gaps.py), every object a step names present
in the test's manifests, and the status checks' rules each exercised both ways. No processes."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.mesh.load import read_objects
from controlplane.mesh.yamldoc import parse_stream
from tests.conformance.gateway_api.expectations import (
    Captured,
    ExpectedRequest,
    ExpectedResponse,
    RedirectRequest,
    Request,
    Response,
    gateway_mismatch,
)
from tests.conformance.gateway_api.gateway_steps import (
    SUITE_SETUP,
    BackendHeaderNamesPod,
    GatewayAddress,
    GatewayConformanceTest,
    GatewayExchanges,
    GatewayGRPCExchanges,
    GatewayWeighted,
    MirrorExchanges,
    PercentMirror,
    RetryProbe,
    Step,
    Subtest,
    TLSExchange,
    TLSRejected,
    TLSStream,
    WebSocketEcho,
)
from tests.conformance.gateway_api.gateway_tests import (
    GATEWAY_CONFORMANCE_TESTS,
    NOT_TRANSLATED,
    OUTSIDE_PROFILES,
)
from tests.conformance.gateway_api.loader_gaps import LOADER_GAPS, Gap
from tests.conformance.gateway_api.mesh_suite import GATEWAY_PROFILES
from tests.conformance.gateway_api.report import SKIPPED, conformance_report
from tests.conformance.gateway_api.status import (
    CONTROLLER,
    NN,
    AttachedListeners,
    Condition,
    GatewayCondition,
    GatewayListeners,
    GatewayRef,
    GatewayZeroRoutes,
    LatestConditions,
    ListenersConditions,
    ListenerStatus,
    ParentStatus,
    PolicyCondition,
    RouteCondition,
    RouteNoAcceptedParents,
    RouteParents,
    RoutesAccepted,
    condition_mismatch,
    conditions_mismatch,
    listeners_mismatch,
    parents_mismatch,
)

UPSTREAM = Path(__file__).parent / "upstream" / "conformance"
TESTS = GATEWAY_CONFORMANCE_TESTS
BY_NAME = {test.short_name: test for test in TESTS}

UPSTREAM_NAMES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "GATEWAY-HTTP": (frozenset({  # 38 core
        "GatewayClassObservedGenerationBump", "GatewayInvalidParametersRef",
        "GatewayInvalidRouteKind", "GatewayInvalidTLSConfiguration",
        "GatewayListenerUnsupportedProtocol", "GatewayModifyListeners", "GatewayNameMaximumLength",
        "GatewayObservedGenerationBump", "GatewaySecretInvalidReferenceGrant",
        "GatewaySecretMissingReferenceGrant", "GatewaySecretReferenceGrantAllInNamespace",
        "GatewaySecretReferenceGrantSpecific", "GatewayWithAttachedRoutes",
        "HTTPRouteCrossNamespace", "HTTPRouteExactPathMatching", "HTTPRouteHTTPSListener",
        "HTTPRouteHeaderMatching", "HTTPRouteHostnameIntersection",
        "HTTPRouteInvalidBackendRefUnknownKind", "HTTPRouteInvalidCrossNamespaceBackendRef",
        "HTTPRouteInvalidCrossNamespaceParentRef", "HTTPRouteInvalidNonExistentBackendRef",
        "HTTPRouteInvalidParentRefNotMatchingSectionName", "HTTPRouteInvalidReferenceGrant",
        "HTTPRouteListenerHostnameMatching", "HTTPRouteMatching", "HTTPRouteMatchingAcrossRoutes",
        "HTTPRouteMultipleGateways", "HTTPRouteNoBackendRefs", "HTTPRouteObservedGenerationBump",
        "HTTPRoutePartiallyInvalidViaInvalidReferenceGrant", "HTTPRoutePathMatchOrder",
        "HTTPRouteRedirectHostAndStatus", "HTTPRouteReferenceGrant",
        "HTTPRouteRequestHeaderModifier", "HTTPRouteServiceTypes", "HTTPRouteSimpleSameNamespace",
        "HTTPRouteWeight",}),
    frozenset({  # 61 extended
        "BackendTLSPolicy", "BackendTLSPolicyConflictResolution",
        "BackendTLSPolicyInvalidCACertificateRef", "BackendTLSPolicyInvalidKind",
        "BackendTLSPolicyObservedGenerationBump", "BackendTLSPolicySANValidation",
        "GatewayFrontendClientCertificateValidation",
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        "GatewayFrontendInvalidDefaultClientCertificateValidation", "GatewayHTTPListenerIsolation",
        "GatewayInfrastructure", "GatewayInvalidFrontendClientCertificateValidation",
        "GatewayInvalidTLSBackendConfiguration", "GatewayOptionalAddressValue",
        "GatewayStaticAddresses", "GatewayTLSBackendClientCertificate",
        "GatewayWithAttachedRoutesWithPort8080", "HTTPRoute303Redirect", "HTTPRoute307Redirect",
        "HTTPRoute308Redirect", "HTTPRouteBackendProtocolH2C", "HTTPRouteBackendProtocolWebSocket",
        "HTTPRouteBackendRequestHeaderModifier", "HTTPRouteBackendRequestRedirect",
        "HTTPRouteBackendURLRewrite", "HTTPRouteCORS",
        "HTTPRouteHTTPSListenerDetectMisdirectedRequests",
        "HTTPRouteInvalidParentRefNotMatchingListenerPort",
        "HTTPRouteInvalidParentRefSectionNameNotMatchingPort", "HTTPRouteListenerPortMatching",
        "HTTPRouteMethodMatching", "HTTPRouteNamedRule", "HTTPRouteQueryParamMatching",
        "HTTPRouteRedirectPath", "HTTPRouteRedirectPort", "HTTPRouteRedirectPortAndScheme",
        "HTTPRouteRedirectScheme", "HTTPRouteRequestHeaderModifierBackendWeights",
        "HTTPRouteRequestMirror", "HTTPRouteRequestMultipleMirrors",
        "HTTPRouteRequestPercentageMirror", "HTTPRouteResponseHeaderModifier", "HTTPRouteRetry",
        "HTTPRouteRetryConnectionError", "HTTPRouteRetryWithTimeouts", "HTTPRouteRewriteHost",
        "HTTPRouteRewritePath", "HTTPRouteTimeoutBackendRequest", "HTTPRouteTimeoutRequest",
        "ListenerSetAllowedNamespaceNone", "ListenerSetAllowedNamespaceSame",
        "ListenerSetAllowedNamespaceSelector", "ListenerSetAllowedRoutesNamespaces",
        "ListenerSetDefaultNotAllowed", "ListenerSetDualParentRefIndependence",
        "ListenerSetGatewayParentSectionNameNotFound", "ListenerSetHTTPRouting",
        "ListenerSetHostnameConflict", "ListenerSetProtocolConflict", "ListenerSetReferenceGrant",
        "ListenerSetRouteStatusScopedToParentRef",})),
    "GATEWAY-TLS": (frozenset({  # 21 core
        "GatewayClassObservedGenerationBump", "GatewayInvalidParametersRef",
        "GatewayInvalidRouteKind", "GatewayInvalidTLSConfiguration",
        "GatewayListenerUnsupportedProtocol", "GatewayModifyListeners", "GatewayNameMaximumLength",
        "GatewayObservedGenerationBump", "GatewaySecretInvalidReferenceGrant",
        "GatewaySecretMissingReferenceGrant", "GatewaySecretReferenceGrantAllInNamespace",
        "GatewaySecretReferenceGrantSpecific", "TLSRouteHostnameIntersection",
        "TLSRouteInvalidBackendRefNonexistent", "TLSRouteInvalidBackendRefUnknownKind",
        "TLSRouteInvalidNoMatchingListener", "TLSRouteInvalidNoMatchingListenerHostname",
        "TLSRouteInvalidReferenceGrant", "TLSRouteListenerPassthroughSupportedKinds",
        "TLSRouteListenerTerminateNotSupported", "TLSRouteSimpleSameNamespace",}),
    frozenset({  # 16 extended
        "BackendTLSPolicyTLSRouteTerminate", "GatewayInfrastructure",
        "GatewayOptionalAddressValue", "GatewayStaticAddresses", "ListenerSetAllowedNamespaceNone",
        "ListenerSetAllowedNamespaceSame", "ListenerSetAllowedNamespaceSelector",
        "ListenerSetAllowedRoutesSupportedKinds", "ListenerSetDefaultNotAllowed",
        "ListenerSetHostnameConflict", "ListenerSetProtocolConflict", "ListenerSetReferenceGrant",
        "TLSRouteListenerMixedTerminationNotSupported", "TLSRouteListenerTerminateSupportedKinds",
        "TLSRouteMixedTerminationSameNamespace", "TLSRouteTerminateSimpleSameNamespace",})),
    "GATEWAY-GRPC": (frozenset({  # 16 core
        "GRPCExactMethodMatching", "GRPCRouteHeaderMatching", "GRPCRouteListenerHostnameMatching",
        "GRPCRouteWeight", "GatewayClassObservedGenerationBump", "GatewayInvalidParametersRef",
        "GatewayInvalidRouteKind", "GatewayInvalidTLSConfiguration",
        "GatewayListenerUnsupportedProtocol", "GatewayModifyListeners", "GatewayNameMaximumLength",
        "GatewayObservedGenerationBump", "GatewaySecretInvalidReferenceGrant",
        "GatewaySecretMissingReferenceGrant", "GatewaySecretReferenceGrantAllInNamespace",
        "GatewaySecretReferenceGrantSpecific",}),
    frozenset({  # 11 extended
        "BackendTLSPolicyGRPCRoute", "GatewayInfrastructure", "GatewayOptionalAddressValue",
        "GatewayStaticAddresses", "ListenerSetAllowedNamespaceNone",
        "ListenerSetAllowedNamespaceSame", "ListenerSetAllowedNamespaceSelector",
        "ListenerSetDefaultNotAllowed", "ListenerSetHostnameConflict",
        "ListenerSetProtocolConflict", "ListenerSetReferenceGrant",})),
}

# Provisional: true in the Go files, among the tests of these profiles.
UPSTREAM_PROVISIONAL = frozenset({
    "BackendTLSPolicyTLSRouteTerminate", "GatewayInfrastructure", "GatewayOptionalAddressValue",
    "HTTPRoute303Redirect", "HTTPRoute307Redirect", "HTTPRoute308Redirect", "HTTPRouteNamedRule",
    "HTTPRouteRequestPercentageMirror", "TLSRouteMixedTerminationSameNamespace",
    "TLSRouteTerminateSimpleSameNamespace"})


def test_provisional_flags_are_upstream_s() -> None:
    for test in TESTS:
        assert test.provisional == (test.short_name in UPSTREAM_PROVISIONAL), test.short_name


def test_every_test_is_translated_once_with_its_upstream_file() -> None:
    names = [test.short_name for test in TESTS]
    assert len(names) == len(set(names))
    assert not set(names) & set(NOT_TRANSLATED)
    for test in TESTS:
        assert test.upstream_file.endswith(".go") and test.description
        assert test.manifests and all(m.startswith("tests/") for m in test.manifests)


# the profiles whose core is translated whole
WHOLE_CORES = ("GATEWAY-HTTP", "GATEWAY-GRPC", "GATEWAY-TLS")  # all of them


@pytest.mark.parametrize("profile", GATEWAY_PROFILES, ids=lambda profile: profile.name)
def test_profile_core_is_translated_or_listed(profile: object) -> None:
    core, _ = UPSTREAM_NAMES[profile.name]  # type: ignore[attr-defined]
    translated = {test.short_name for test in TESTS
                  if profile.has(test) and not profile.is_extended(test)}  # type: ignore
    assert translated <= core
    assert core - translated <= set(NOT_TRANSLATED), sorted(core - translated)
    if profile.name in WHOLE_CORES:  # type: ignore[attr-defined]
        assert translated == core


@pytest.mark.parametrize("profile", GATEWAY_PROFILES, ids=lambda profile: profile.name)
def test_profile_extended_is_translated_or_listed(profile: object) -> None:
    _, extended = UPSTREAM_NAMES[profile.name]  # type: ignore[attr-defined]
    translated = {test.short_name for test in TESTS
                  if profile.has(test) and profile.is_extended(test)}  # type: ignore
    assert translated <= extended
    assert extended - translated <= set(NOT_TRANSLATED), sorted(extended - translated)


def test_not_translated_names_are_upstream_names() -> None:
    known = set().union(*(core | extended for core, extended in UPSTREAM_NAMES.values()))
    assert set(NOT_TRANSLATED) <= known
    assert not known & set(OUTSIDE_PROFILES)


def test_every_profile_is_translated_whole() -> None:
    """Core and extended of the three profiles: every upstream test is translated; with the
    139 gateway tests of conformance/tests/*.go, 20 count in none of them (OUTSIDE_PROFILES)."""
    known = set().union(*(core | extended for core, extended in UPSTREAM_NAMES.values()))
    assert {test.short_name for test in TESTS} == known and not NOT_TRANSLATED
    assert len(known) + len(OUTSIDE_PROFILES) == 139  # ShortName: in conformance/tests/*.go


def _refused(manifest: str) -> set[tuple[str, str]]:
    _, errors = read_objects((UPSTREAM / manifest).read_text(), manifest)
    return {(error.location.obj, error.location.field) for error in errors}


def _gaps(manifest: str) -> set[tuple[str, str]]:
    return {(gap.obj, gap.field) for gap in LOADER_GAPS if gap.manifest == manifest}


def _manifests() -> list[str]:
    return sorted({"base/manifests.yaml"} | {m for test in TESTS for m in test.manifests})


@pytest.mark.parametrize("manifest", _manifests())
def test_manifests_load_but_for_the_recorded_gaps(manifest: str) -> None:
    assert (UPSTREAM / manifest).is_file()
    objects, _ = read_objects((UPSTREAM / manifest).read_text(), manifest)
    assert objects or _gaps(manifest), "nothing of it loads and no gap is recorded"
    assert _refused(manifest) == _gaps(manifest)


def test_every_gap_is_for_a_vendored_manifest_with_a_reason() -> None:
    manifests = set(_manifests())
    for gap in LOADER_GAPS:
        assert isinstance(gap, Gap) and gap.manifest in manifests and gap.why


@functools.cache
def _manifest_objects(manifest: str) -> frozenset[tuple[str, str, str]]:
    found = set()
    for document in parse_stream((UPSTREAM / manifest).read_text(), manifest):
        data = document.data
        if isinstance(data, dict):
            meta = data.get("metadata") or {}
            found.add((data.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")))
    return frozenset(found)


def _objects(test: GatewayConformanceTest) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of every object in the base and the test's manifests, read
    as plain YAML (our loader refuses some), and of the suite's programmatic setup."""
    found = {(step.kind, step.name.namespace, step.name.name) for step in SUITE_SETUP}
    for manifest in ("base/manifests.yaml", *test.manifests):
        found |= _manifest_objects(manifest)
    return found


def _walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    for step in steps:
        if isinstance(step, Subtest):
            yield from _walk(step.steps)
        else:
            yield step


def _named(step: Step) -> Iterator[tuple[str, NN]]:
    """The objects a step names, as (kind, name)."""
    if isinstance(step, RoutesAccepted):
        yield step.gateway.kind, step.gateway.nn
        for route in step.routes:
            yield step.kind, route
    elif isinstance(step, RouteCondition):
        yield step.kind, step.route
        yield step.parent_kind, step.gateway
    elif isinstance(step, (RouteParents, RouteNoAcceptedParents)):
        yield step.kind, step.route
    elif isinstance(step, PolicyCondition):
        yield step.kind, step.policy
        yield "Gateway", step.gateway
    elif isinstance(step, GatewayAddress):
        yield "Gateway", step.gateway.nn
    elif isinstance(step, (GatewayListeners, ListenersConditions, GatewayCondition)):
        yield step.kind, step.gateway
    elif isinstance(step, (GatewayZeroRoutes, AttachedListeners)):
        yield "Gateway", step.gateway
    elif isinstance(step, LatestConditions):
        yield step.kind, step.name
    elif isinstance(step, (GatewayExchanges, GatewayGRPCExchanges, GatewayWeighted,
                           BackendHeaderNamesPod, MirrorExchanges, PercentMirror, RetryProbe,
                           WebSocketEcho, TLSExchange, TLSRejected, TLSStream)):
        yield "Gateway", step.gateway.nn
        if isinstance(step, TLSExchange):
            yield "Secret", step.server_cert
            if step.client_cert:
                yield "Secret", step.client_cert
        if isinstance(step, GatewayExchanges) and step.server_cert:
            yield "Secret", step.server_cert
        if isinstance(step, TLSStream):
            yield "ConfigMap", step.ca


@pytest.mark.parametrize("test", TESTS, ids=lambda test: test.short_name)
def test_steps_name_objects_of_the_manifests(test: GatewayConformanceTest) -> None:
    objects = _objects(test)
    for step in _walk(test.steps):
        for kind, name in _named(step):
            assert (kind, name.namespace, name.name) in objects, (kind, name)


def test_condition_rule_follows_find_condition_in_list() -> None:
    actual = [{"type": "Accepted", "status": "False", "reason": "NotAllowedByListeners"}]
    assert condition_mismatch(Condition("Accepted", "False", "NotAllowedByListeners"),
                              actual) is None
    assert condition_mismatch(Condition("Accepted"), actual) is None  # any status, any reason
    assert condition_mismatch(Condition("Accepted", "False"), actual) is None
    assert condition_mismatch(Condition("Accepted", "True"), actual)
    assert condition_mismatch(Condition("Accepted", "False", "NoMatchingParent"), actual)
    assert condition_mismatch(Condition("ResolvedRefs"), actual)
    assert conditions_mismatch((Condition("Accepted"), Condition("ResolvedRefs")), actual)
    assert conditions_mismatch((), actual) is None


def _parent(**overrides: object) -> dict[str, object]:
    parent: dict[str, object] = {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                      "name": "same-namespace", "namespace": "gateway-conformance-infra"},
        "controllerName": "pointsman.io/gateway",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}
    parent.update(overrides)
    return parent


def test_parents_rule_follows_parents_for_route_match() -> None:
    want = RouteParents(NN("r"), (ParentStatus("same-namespace", conditions=(
        Condition("Accepted", "True", "Accepted"),)),), namespace_required=False)
    controller = "pointsman.io/gateway"
    assert want.parents[0].controller == CONTROLLER
    assert parents_mismatch(want, [_parent()], controller) is None
    assert parents_mismatch(want, [_parent()], "other.io/gateway")
    assert parents_mismatch(want, [_parent(conditions=[])], controller)
    unset = _parent(parentRef={"group": "gateway.networking.k8s.io", "kind": "Gateway",
                               "name": "same-namespace"})
    assert parents_mismatch(want, [unset], controller) is None  # namespace not required
    required = RouteParents(NN("r"), want.parents, namespace_required=True)
    assert parents_mismatch(required, [unset], controller)
    other = _parent(parentRef={"group": "gateway.networking.k8s.io", "kind": "Gateway",
                               "name": "same-namespace", "namespace": "elsewhere"})
    assert parents_mismatch(want, [other], controller)  # set and different always counts
    # helpers.go compares neither sectionName nor port (HTTPRouteHTTPSListener relies on it)
    section = RouteParents(NN("r"), (ParentStatus("same-namespace", section_name="http"),))
    assert parents_mismatch(section, [_parent()], controller) is None


def test_routes_accepted_builds_the_helper_s_parents() -> None:
    step = RoutesAccepted(GatewayRef("gw", listeners=("a", "b")), (NN("r", "other"),))
    expected = step.expected_parents(NN("r", "other"))
    assert expected.namespace_required  # the route lives in another namespace
    assert [parent.section_name for parent in expected.parents] == ["a", "b"]
    actual = [_parent(parentRef={"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                 "name": "gw", "namespace": "gateway-conformance-infra",
                                 "sectionName": section}) for section in ("a", "b")]
    assert parents_mismatch(expected, actual, "pointsman.io/gateway") is None
    # one parent per Gateway suffices: helpers.go does not compare sectionName
    assert parents_mismatch(expected, actual[:1], "pointsman.io/gateway") is None
    listener_set = RoutesAccepted(GatewayRef("ls", kind="ListenerSet"), (NN("r"),))
    [parent] = listener_set.expected_parents(NN("r")).parents
    assert parent.kind == "ListenerSet" and not listener_set.expected_parents(
        NN("r")).namespace_required


def _listener(**overrides: object) -> dict[str, object]:
    listener: dict[str, object] = {
        "name": "http", "attachedRoutes": 1,
        "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
                           {"kind": "GRPCRoute"}],
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"},
                       {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs"}]}
    listener.update(overrides)
    return listener


def test_listeners_rule_follows_gateway_listeners_match() -> None:
    ready = (Condition("Accepted", "True"), Condition("ResolvedRefs", "True"))
    want = (ListenerStatus("http", ("HTTPRoute", "GRPCRoute"), ready, 1),)
    assert listeners_mismatch(want, [_listener()]) is None
    assert listeners_mismatch(want, [_listener(), _listener(name="https")])  # count
    assert listeners_mismatch(want, [_listener(name="https")])
    assert listeners_mismatch(want, [_listener(attachedRoutes=2)])
    assert listeners_mismatch(want, [_listener(supportedKinds=[{"kind": "TLSRoute"}])])
    assert listeners_mismatch(want, [_listener(conditions=[])])
    fewer = (ListenerStatus("http", ("HTTPRoute",), ready, 1),)  # more kinds actual: fine
    assert listeners_mismatch(fewer, [_listener()]) is None
    none = (ListenerStatus("http", (), (), 1),)  # none expected: none allowed
    assert listeners_mismatch(none, [_listener()])
    assert listeners_mismatch(none, [_listener(supportedKinds=[])]) is None


def _captured(**overrides: object) -> Captured:
    values: dict[str, object] = {
        "status": 200, "host": "example.com", "path": "/v2", "method": "GET",
        "namespace": "gateway-conformance-infra", "pod": "infra-backend-v2-7f9c-x2x4q",
        "request_headers": {"Version": ["two"]},
        "response_headers": {"Access-Control-Allow-Methods": ["OPTIONS, GET"]}}
    values.update(overrides)
    return Captured(**values)  # type: ignore[arg-type]


def test_gateway_check_follows_compare_round_trip() -> None:
    case = ExpectedResponse(request=Request(host="example.com", path="/v2",
                                            headers={"version": "two"}),
                            backend="infra-backend-v2", namespace="gateway-conformance-infra")
    url = "http://gw/v2"
    assert gateway_mismatch(case, url, _captured()) is None  # expected request = the request
    assert "status code" in str(gateway_mismatch(case, url, _captured(status=404)))
    assert "path" in str(gateway_mismatch(case, url, _captured(path="/")))
    assert "host" in str(gateway_mismatch(case, url, _captured(host="other")))
    assert "method" in str(gateway_mismatch(case, url, _captured(method="POST")))
    assert "namespace" in str(gateway_mismatch(case, url, _captured(namespace="x")))
    assert "pod name" in str(gateway_mismatch(case, url, _captured(pod="infra-backend-v1-a-b")))
    assert "header" in str(gateway_mismatch(case, url, _captured(request_headers={})))
    # a rewrite: what the backend saw is ExpectedRequest, the host then not compared
    rewrite = ExpectedResponse(request=Request(path="/prefix/one"),
                               expected_request=ExpectedRequest(path="/one"),
                               backend="infra-backend-v2", namespace="gateway-conformance-infra")
    assert gateway_mismatch(rewrite, url, _captured(path="/one", host="any")) is None
    assert gateway_mismatch(rewrite, url, _captured(path="/prefix/one"))
    # a status-only case: a 5xx is not compared further, a timeout passes for a timeout
    failing = ExpectedResponse(request=Request(path="/"), response=Response(status_code=500))
    assert gateway_mismatch(failing, url, _captured(status=500, pod="")) is None
    timeout = ExpectedResponse(response=Response(status_code=504))
    assert gateway_mismatch(timeout, url, _captured(status=408)) is None


def test_gateway_check_response_headers_and_tls() -> None:
    cors = ExpectedResponse(
        request=Request(path="/cors", method="OPTIONS"),
        expected_request=ExpectedRequest(method="OPTIONS"),
        response=Response(status_codes=(200, 204), valid_header_values={
            "access-control-allow-methods": ("GET, OPTIONS", "OPTIONS, GET")},
            absent_headers=("access-control-allow-credentials",), ignore_whitespace=True))
    preflight = _captured(status=204, host="", path="", method="OPTIONS", namespace="", pod="",
                          response_headers={"Access-Control-Allow-Methods": ["OPTIONS,GET"]})
    assert gateway_mismatch(cors, "http://gw/cors", preflight) is None
    strict = ExpectedResponse(request=cors.request, expected_request=cors.expected_request,
                              response=Response(status_codes=(204,), valid_header_values={
                                  "access-control-allow-methods": ("OPTIONS, GET",)}))
    assert "one of" in str(gateway_mismatch(strict, "http://gw/cors", preflight))
    leaked = _captured(status=204, host="", path="", method="OPTIONS", namespace="", pod="",
                       response_headers={"Access-Control-Allow-Methods": ["GET"],
                                         "Access-Control-Allow-Credentials": ["true"]})
    assert gateway_mismatch(cors, "http://gw/cors", leaked)
    tls = ExpectedResponse(request=Request(host="abc.example.com", path="/", sni="abc.example.com",
                                           client_cert="PEM"), namespace="ns")
    good = _captured(host="abc.example.com", path="/", namespace="ns", request_headers={},
                     sni="abc.example.com", peer_certificates=("PEM",))
    assert gateway_mismatch(tls, "https://gw/", good) is None
    assert "SNI" in str(gateway_mismatch(tls, "https://gw/", _captured(
        host="abc.example.com", path="/", namespace="ns", sni="other", peer_certificates=("PEM",))))
    assert "certificate" in str(gateway_mismatch(tls, "https://gw/", _captured(
        host="abc.example.com", path="/", namespace="ns", sni="abc.example.com")))
    redirect = ExpectedResponse(request=Request(path="/old", unfollow_redirect=True),
                                response=Response(status_code=302),
                                redirect_request=RedirectRequest(path="/new"))
    assert gateway_mismatch(redirect, "http://gw/old", _captured(
        status=302, location="http://gw/new")) is None
    assert gateway_mismatch(redirect, "http://gw/old", _captured(
        status=302, location="http://gw/old"))


# Tests per profile whose own manifests our loader reads whole today (GAPS.md states these).
OWN_MANIFESTS_LOAD = {("GATEWAY-HTTP", "core"): 37, ("GATEWAY-HTTP", "extended"): 59,
                      ("GATEWAY-TLS", "core"): 20, ("GATEWAY-TLS", "extended"): 15,
                      ("GATEWAY-GRPC", "core"): 15, ("GATEWAY-GRPC", "extended"): 10}


def test_the_counts_gaps_md_states() -> None:
    refused = {gap.manifest for gap in LOADER_GAPS}
    for profile in GATEWAY_PROFILES:
        for part in ("core", "extended"):
            tests = [test for test in TESTS if profile.has(test)
                     and profile.is_extended(test) == (part == "extended")]
            loading = sum(1 for test in tests if not set(test.manifests) & refused)
            assert loading == OWN_MANIFESTS_LOAD[profile.name, part], (profile.name, part)


def test_the_report_counts_the_translated_tests_per_profile() -> None:
    report = conformance_report(
        [(test, SKIPPED) for test in TESTS], GATEWAY_PROFILES, supported=(),
        implementation={"project": "pointsman"}, gateway_api_version="v1.5.1",
        channel="standard", date="2026-12-07T00:00:00Z")
    counts = {entry["name"]: (entry["core"]["statistics"]["Skipped"],
                              entry["extended"]["statistics"]["Skipped"])
              for entry in report["profiles"]}
    assert counts == {name: (len(core), len(extended))
                      for name, (core, extended) in UPSTREAM_NAMES.items()}
