"""The ConformanceReport bookkeeping against reports.go's rules."""

from __future__ import annotations

from dataclasses import dataclass

from tests.conformance.gateway_api.report import (
    FAILED,
    NOT_SUPPORTED,
    PROVISIONAL_SKIPPED,
    SKIPPED,
    SUCCEEDED,
    Profile,
    conformance_report,
)

MESH_HTTP = Profile("MESH-HTTP", frozenset({"Mesh", "HTTPRoute"}),
                    frozenset({"MeshHTTPRouteRewritePath", "MeshConsumerRoute"}))


@dataclass(frozen=True)
class _Test:
    short_name: str
    features: tuple[str, ...]
    provisional: bool = False


def _report(*results: tuple[_Test, str]) -> dict[str, object]:
    return conformance_report(results, [MESH_HTTP], supported={"MeshHTTPRouteRewritePath"},
                              implementation={"project": "pointsman"},
                              gateway_api_version="v1.5.1", channel="standard",
                              date="2026-12-07T00:00:00Z")


def test_core_and_extended_are_counted_apart() -> None:
    report = _report((_Test("A", ("Mesh", "HTTPRoute")), SUCCEEDED),
                     (_Test("B", ("Mesh", "HTTPRoute", "MeshHTTPRouteRewritePath")), SUCCEEDED),
                     (_Test("C", ("Mesh", "HTTPRoute")), FAILED),
                     (_Test("D", ("Mesh", "GRPCRoute")), SUCCEEDED))  # in no profile here
    [profile] = report["profiles"]  # type: ignore[misc]
    assert profile["core"] == {"result": "failure", "failedTests": ["C"],
                               "statistics": {"Failed": 1, "Passed": 1, "Skipped": 0}}
    assert profile["extended"]["statistics"] == {"Failed": 0, "Passed": 1, "Skipped": 0}
    assert profile["extended"]["supportedFeatures"] == ["MeshHTTPRouteRewritePath"]
    assert profile["extended"]["unsupportedFeatures"] == ["MeshConsumerRoute"]
    assert profile["summary"] == "Core tests failed with 1 test failures. Extended tests succeeded."
    assert report["kind"] == "ConformanceReport"
    assert report["apiVersion"] == "gateway.networking.k8s.io/v1"


def test_skips_make_partial_and_unsupported_count_nowhere() -> None:
    report = _report((_Test("A", ("Mesh", "HTTPRoute")), SKIPPED),
                     (_Test("B", ("Mesh", "MeshConsumerRoute")), NOT_SUPPORTED),
                     (_Test("P", ("Mesh",), provisional=True), PROVISIONAL_SKIPPED))
    [profile] = report["profiles"]  # type: ignore[misc]
    assert profile["core"]["result"] == "partial"
    assert profile["core"]["skippedTests"] == ["A"]
    assert "extended" not in profile
    assert profile["summary"] == "Core tests partially succeeded with 1 test skips."


def test_provisional_passes_are_listed() -> None:
    report = _report((_Test("P", ("Mesh", "HTTPRoute"), provisional=True), SUCCEEDED))
    assert report["succeededProvisionalTests"] == ["P"]


def test_the_run_writes_the_gateway_profiles_into_the_same_report() -> None:
    """run_report.report_of: the mesh profiles, then the gateway ones; a gateway core test
    skipped for a known gap counts as a skip (partial), one naming a feature not claimed
    counts nowhere, and supportedFeatures are the gateway runner's claims."""
    from tests.conformance.gateway_api import gateway_runner
    from tests.conformance.gateway_api.mesh_runner import Outcome
    from tests.conformance.gateway_api.run_report import GATEWAY_TESTS, report_of

    mesh = [Outcome("MeshBasic", "passed")]
    gateway = [Outcome("HTTPRouteSimpleSameNamespace", "passed"),
               Outcome("GatewayInvalidParametersRef", "skipped", "a known gap"),
               Outcome("GatewayInfrastructure", gateway_runner.NOT_RUN, "not claimed"),
               Outcome("HTTPRouteRedirectPath", "passed")]
    assert {item.name for item in gateway} <= {test.short_name for test in GATEWAY_TESTS}
    report = report_of(mesh, gateway, "2026-12-07T00:00:00Z")
    profiles = {item["name"]: item for item in report["profiles"]}
    assert next(iter(profiles)) == "MESH-HTTP" and "GATEWAY-HTTP" in profiles
    http = profiles["GATEWAY-HTTP"]
    assert http["core"]["statistics"] == {"Failed": 0, "Passed": 1, "Skipped": 1}
    assert http["core"]["skippedTests"] == ["GatewayInvalidParametersRef"]
    assert http["extended"]["statistics"] == {"Failed": 0, "Passed": 1, "Skipped": 0}
    assert "HTTPRoutePathRedirect" in http["extended"]["supportedFeatures"]
    assert "GatewayInfrastructurePropagation" in http["extended"]["unsupportedFeatures"]
    assert "ListenerSet" in http["extended"]["supportedFeatures"]
    assert "GatewayHTTPSListenerDetectMisdirectedRequests" in \
        http["extended"]["supportedFeatures"]
    assert "HTTPRouteRetry" in http["extended"]["supportedFeatures"]
