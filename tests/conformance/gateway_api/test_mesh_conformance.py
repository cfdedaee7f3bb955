"""The Gateway API conformance suite's mesh tests (MESH-HTTP, MESH-GRPC), run end to end: one
control plane and one set of workloads (the base manifests' echo pods, each an echo server
behind `pointsman sidecar --workload`) shared by every test, as the Go suite shares its base
manifests; each test applies its own manifests with `pointsman apply`, sends its cases from the
client pod through its sidecar, checks them as the suite does (expectations.py) and deletes its
manifests. A test naming a feature we do not claim (mesh_runner.UNSUPPORTED_FEATURES) is not
run, as the suite skips it; the last test here says which and why.

A few tests run again with Envoy as every sidecar (the reference: the same control plane and
manifests must pass with it too); `run_report --proxy envoy` runs them all so.

`python -m tests.conformance.gateway_api.run_report` runs the same and writes the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conformance.gateway_api.expectations import ECHO_V1, ECHO_V2
from tests.conformance.gateway_api.expectations import MESH_NAMESPACE as NS
from tests.conformance.gateway_api.mesh_runner import (
    SUPPORTED_FEATURES,
    UNSUPPORTED_FEATURES,
    MeshHarness,
    unsupported,
)
from tests.conformance.gateway_api.mesh_suite import MESH_TESTS, ConformanceTest
from tests.support.meshapi import pointsman

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

RUN = [test for test in MESH_TESTS if unsupported(test) is None]
# with Envoy sidecars: workload selection, consumer routes, pod addresses, gRPC, weights
WITH_ENVOY = [test for test in RUN if test.short_name in {
    "MeshConsumerRoute", "MeshFrontend", "MeshPorts", "MeshGRPCRouteRequestHeaderModifier",
    "MeshHTTPRouteWeight"}]


@pytest.fixture(scope="module")
def harness() -> Iterator[MeshHarness]:
    with MeshHarness() as started:
        yield started


@pytest.fixture(scope="module")
def envoy_harness() -> Iterator[MeshHarness]:
    with MeshHarness(proxy="envoy") as started:
        yield started


@pytest.mark.parametrize("test", RUN, ids=[test.short_name for test in RUN])
def test_mesh(harness: MeshHarness, test: ConformanceTest) -> None:
    outcome = harness.run(test)
    assert outcome.result == "passed", f"{test.short_name}: {outcome.reason}"


@pytest.mark.parametrize("test", WITH_ENVOY, ids=[test.short_name for test in WITH_ENVOY])
def test_mesh_with_envoy_sidecars(envoy_harness: MeshHarness, test: ConformanceTest) -> None:
    outcome = envoy_harness.run(test)
    assert outcome.result == "passed", f"{test.short_name}: {outcome.reason}"


def test_only_the_unclaimed_features_keep_a_test_from_running() -> None:
    not_run = {test.short_name for test in MESH_TESTS if unsupported(test) is not None}
    assert not_run == {"MeshFrontendHostname"}
    assert set(UNSUPPORTED_FEATURES) == {"MeshClusterIPMatching"}
    assert "MeshConsumerRoute" in SUPPORTED_FEATURES
    assert len(WITH_ENVOY) == 5


def test_describe_and_get_show_the_workloads_and_namespaces(harness: MeshHarness) -> None:
    """`pointsman describe svc echo`: both echo pods back `echo`, at their targetPorts;
    `pointsman get ns`: the suite's Namespaces with their labels."""
    assert harness.control_plane is not None
    server = harness.control_plane.api
    described = pointsman("describe", "svc", "echo", "-n", NS, "-o", "json", server=server)
    assert described.returncode == 0, described.stderr
    found = {(item["address"], item["port"], item["source"])
             for item in json.loads(described.stdout)["endpoints"]}
    v1, v2 = harness.client(ECHO_V1, NS), harness.client(ECHO_V2, NS)
    assert {(v1.instance_ip, 8080, "workload echo-v1"), (v2.instance_ip, 8080,
            "workload echo-v2"), (v1.instance_ip, 7070, "workload echo-v1")} <= found
    described = pointsman("describe", "svc", "echo-v1", "-n", NS, "-o", "json", server=server)
    assert {item["source"] for item in json.loads(described.stdout)["endpoints"]} == {
        "workload echo-v1"}
    listed = pointsman("get", "ns", "-o", "yaml", server=server)
    assert listed.returncode == 0, listed.stderr
    assert "gateway-conformance: mesh-consumer" in listed.stdout
