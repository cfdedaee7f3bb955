"""The translated suite against what it was translated from: every test names manifests that are
vendored, unchanged upstream names and features, the upstream checks' rules (each exercised
both ways), and the profile bookkeeping of the upstream report. No processes: these guard the
translation itself; the runs are in test_mesh_profile.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.mesh.load import read_objects
from tests.conformance.gateway_api.expectations import (
    WEIGHT_REQUESTS,
    ExpectedRequest,
    ExpectedResponse,
    Observed,
    RedirectRequest,
    Request,
    Response,
    backend_name,
    mesh_mismatch,
    redirect_mismatch,
    weights_mismatch,
)
from tests.conformance.gateway_api.mesh_suite import MESH_PROFILES, MESH_TESTS, profiles_of

UPSTREAM = Path(__file__).parent / "upstream"


def test_upstream_commit_and_licence_are_recorded() -> None:
    assert "commit: 4564255ac2c35d582249b3cdf261bdf51c8bca32" in (UPSTREAM / "UPSTREAM").read_text()
    assert "Apache License" in (UPSTREAM / "LICENSE").read_text()


def test_every_mesh_test_is_translated_once() -> None:
    names = [test.short_name for test in MESH_TESTS]
    assert len(names) == len(set(names)) == 23  # ShortName: in conformance/tests/mesh/*.go
    vendored = {path.name for path in (UPSTREAM / "conformance/tests/mesh").glob("*.yaml")}
    used = {Path(manifest).name for test in MESH_TESTS for manifest in test.manifests}
    assert used == vendored


@pytest.mark.parametrize("test", MESH_TESTS, ids=lambda test: test.short_name)
def test_route_manifests_load_as_mesh_objects(test: object) -> None:
    for manifest in test.manifests:  # type: ignore[attr-defined]
        objects, errors = read_objects((UPSTREAM / "conformance" / manifest).read_text(), manifest)
        assert objects and not errors, errors


def _observed(**overrides: object) -> Observed:
    values: dict[str, object] = {
        "status": 200, "request_headers": {"X-Header-Add": ["a", "b"], "Version": ["one"]},
        "response_headers": [("X-Header-Set", "set")], "hostname": "echo-v1-5d8f-abcde"}
    values.update(overrides)
    return Observed(**values)  # type: ignore[arg-type]


def test_mesh_check_follows_compare_request() -> None:
    case = ExpectedResponse(
        request=Request(path="/"), backend="echo-v1",
        expected_request=ExpectedRequest(headers={"x-header-add": "a,b"},
                                         absent_headers=("X-Header-Remove",)),
        response=Response(headers={"x-header-set": "set"}))
    assert mesh_mismatch(case, _observed()) is None
    assert "status code" in str(mesh_mismatch(case, _observed(status=404)))
    assert "pod name" in str(mesh_mismatch(case, _observed(hostname="echo-v2-1-2")))
    assert "to not be set" in str(mesh_mismatch(case, _observed(
        request_headers={"X-Header-Add": ["a", "b"], "x-header-remove": ["x"]})))
    assert "set to a,b" in str(mesh_mismatch(case, _observed(
        request_headers={"X-Header-Add": ["a"]})))
    assert "expected header" in str(mesh_mismatch(case, _observed(response_headers=[])))


def test_status_code_joins_status_codes_and_defaults_to_200() -> None:
    assert Response().accepted_statuses() == (200,)
    assert Response(status_code=404).accepted_statuses() == (404,)
    assert Response(status_code=302, status_codes=(301,)).accepted_statuses() == (301, 302)
    grpc = ExpectedResponse(request=Request(protocol="grpc"), response=Response(status_codes=(0,)))
    assert mesh_mismatch(grpc, _observed()) is None


def test_redirect_check_follows_compare_round_trip() -> None:
    case = ExpectedResponse(redirect_request=RedirectRequest(host="example.org", port="8083"))
    assert redirect_mismatch(case, "http://echo/port", "http://example.org:8083/port") is None
    assert "port" in str(redirect_mismatch(case, "http://echo/port", "http://example.org/port"))
    scheme = ExpectedResponse(redirect_request=RedirectRequest(scheme="https"))
    assert redirect_mismatch(scheme, "http://echo/s", "https://echo/s") is None
    assert redirect_mismatch(scheme, "http://echo/s", "https://echo:443/s") is None
    assert "443 or not set" in str(redirect_mismatch(scheme, "http://echo/s", "https://echo:80/s"))
    path = ExpectedResponse(redirect_request=RedirectRequest(path="/new"))
    assert "path" in str(redirect_mismatch(path, "http://echo/old", "http://echo/old"))


def test_weights_follow_the_batch_rule() -> None:
    assert backend_name("echo-v1-7f9c6d-x2x4q") == "echo-v1"
    assert backend_name("echo") == "echo"
    pods = ["echo-v1-a-b"] * 350 + ["echo-v2-a-b"] * 150
    assert weights_mismatch({"echo-v1": 0.7, "echo-v2": 0.3}, pods) is None
    pods = ["echo-v1-a-b"] * 400 + ["echo-v2-a-b"] * 100
    assert "not within tolerance" in str(weights_mismatch({"echo-v1": 0.7, "echo-v2": 0.3}, pods))
    strangers = ["other-a-b"] * WEIGHT_REQUESTS
    assert "unexpected pod" in str(weights_mismatch({"echo-v1": 1.0}, strangers))
    assert "responses" in str(weights_mismatch({"echo-v1": 1.0}, ["echo-v1-a-b"]))


def test_profiles_as_the_upstream_report_counts_them() -> None:
    by_name = {test.short_name: test for test in MESH_TESTS}
    assert profiles_of(by_name["MeshBasic"]) == ("MESH-HTTP", "MESH-GRPC")
    assert profiles_of(by_name["MeshHTTPRouteMatching"]) == ("MESH-HTTP",)
    assert profiles_of(by_name["MeshGRPCRouteWeight"]) == ("MESH-GRPC",)
    assert profiles_of(by_name["MeshFrontend"]) == ()  # needs a GATEWAY-HTTP feature
    mesh_http = MESH_PROFILES[0]
    assert not mesh_http.is_extended(by_name["MeshHTTPRouteWeight"])
    assert mesh_http.is_extended(by_name["MeshHTTPRouteRewritePath"])
