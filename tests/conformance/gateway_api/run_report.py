"""`python -m tests.conformance.gateway_api.run_report [--out DIR] [--proxy envoy]
[--profiles mesh,gateway]`: runs the translated mesh tests (MESH-HTTP, MESH-GRPC) end to end, as
test_mesh_conformance.py does, then the gateway tests (GATEWAY-HTTP, GATEWAY-GRPC, GATEWAY-TLS,
core and extended) as test_gateway_conformance.py does (gateway_runner.py), and writes one
ConformanceReport (report.py, the upstream format) with every profile to
`DIR/<gateway API version>-pointsman-report.yaml` (DIR: docs/conformance), with a results file
beside it listing every test as passed, failed (why), skipped (why: a core test our model
cannot pass yet, gateway_runner.KNOWN_GAPS) or not run (why: a feature not claimed). Prints
each result as it comes. Exit status 1 when a test failed. `--proxy envoy` runs the mesh
profiles only (every sidecar Envoy); the Gateways' proxies are Pointsman's.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from tests.conformance.gateway_api import gateway_runner
from tests.conformance.gateway_api.gateway_runner import NOT_RUN, GatewayHarness
from tests.conformance.gateway_api.gateway_steps import GatewayConformanceTest
from tests.conformance.gateway_api.gateway_tests import GATEWAY_CONFORMANCE_TESTS
from tests.conformance.gateway_api.mesh_runner import SUPPORTED_FEATURES, MeshHarness, Outcome
from tests.conformance.gateway_api.mesh_suite import GATEWAY_PROFILES, MESH_PROFILES, MESH_TESTS
from tests.conformance.gateway_api.report import (
    FAILED,
    NOT_SUPPORTED,
    SKIPPED,
    SUCCEEDED,
    conformance_report,
)

REPO = Path(__file__).resolve().parents[3]
# `git describe --tags` of the commit in upstream/UPSTREAM (a main-branch snapshot: no release)
GATEWAY_API_VERSION = "monthly-2026.06-120-g4564255ac"
CHANNEL = "standard"
RESULTS = {"passed": SUCCEEDED, "failed": FAILED, "skipped": NOT_SUPPORTED}  # mesh runner's
# the gateway runner's: a known gap is a skip (it counts: "partial"), a feature not claimed is
# not run (it counts nowhere), as reports.go has it
GATEWAY_RESULTS = {"passed": SUCCEEDED, "failed": FAILED, "skipped": SKIPPED,
                   NOT_RUN: NOT_SUPPORTED}
# every translated test of the gateway profiles (core and extended), in the translation's order
GATEWAY_TESTS: tuple[GatewayConformanceTest, ...] = tuple(
    test for test in GATEWAY_CONFORMANCE_TESTS
    if any(profile.has(test) for profile in GATEWAY_PROFILES))


def implementation() -> dict[str, Any]:
    """The project has no public address or contact yet: left empty, to fill in before a
    report is submitted upstream (docs/conformance/README.md)."""
    return {"organization": "pointsman", "project": "pointsman", "url": "",
            "version": f"v{metadata.version('pointsman')}", "contact": []}


def results_file(outcomes: list[Outcome], proxy: str) -> dict[str, Any]:
    """Every test and its result, with the reason for anything but a pass."""
    return {"gatewayAPIVersion": GATEWAY_API_VERSION, "sidecar": proxy, "tests": [
        {"name": item.name, "result": item.result, **({"reason": item.reason}
                                                     if item.reason else {})}
        for item in outcomes]}


def _print(outcome: Outcome) -> Outcome:
    print(f"{outcome.name}: {outcome.result}"
          + (f" ({outcome.reason})" if outcome.reason else ""), flush=True)
    return outcome


def run_mesh(proxy: str) -> list[Outcome]:
    with MeshHarness(proxy=proxy) as harness:
        return [_print(harness.run(test)) for test in MESH_TESTS]


def run_gateway() -> list[Outcome]:
    with GatewayHarness() as harness:
        return [_print(harness.run(test)) for test in GATEWAY_TESTS]


def report_of(mesh: list[Outcome], gateway: list[Outcome], date: str) -> dict[str, Any]:
    """One ConformanceReport: the mesh profiles, then the gateway profiles, each with the
    features its own runner claims."""
    by_name = {test.short_name: test for test in MESH_TESTS}
    report = conformance_report(
        [(by_name[item.name], RESULTS[item.result]) for item in mesh], MESH_PROFILES,
        supported=SUPPORTED_FEATURES, implementation=implementation(),
        gateway_api_version=GATEWAY_API_VERSION, channel=CHANNEL, date=date)
    if not gateway:
        return report
    gateway_by_name = {test.short_name: test for test in GATEWAY_TESTS}
    edge = conformance_report(
        [(gateway_by_name[item.name], GATEWAY_RESULTS[item.result]) for item in gateway],
        GATEWAY_PROFILES, supported=gateway_runner.SUPPORTED_FEATURES,
        implementation=implementation(), gateway_api_version=GATEWAY_API_VERSION,
        channel=CHANNEL, date=date)
    report["profiles"] = [*report["profiles"], *edge["profiles"]]
    provisional = [*report.get("succeededProvisionalTests", ()),
                   *edge.get("succeededProvisionalTests", ())]
    if provisional:
        report["succeededProvisionalTests"] = provisional
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_report", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "conformance")
    parser.add_argument("--proxy", choices=["pointsman", "envoy"], default="pointsman",
                        help="the sidecar every mesh workload runs")
    parser.add_argument("--profiles", default="mesh,gateway",
                        help="which suites to run: mesh, gateway or both")
    args = parser.parse_args(argv)
    wanted = set(args.profiles.split(","))
    started = time.monotonic()
    mesh = run_mesh(args.proxy) if "mesh" in wanted else []
    gateway = run_gateway() if "gateway" in wanted and args.proxy == "pointsman" else []
    outcomes = mesh + gateway
    report = report_of(mesh, gateway,
                       datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.proxy == "pointsman" else f"-{args.proxy}-sidecars"
    path = args.out / f"{GATEWAY_API_VERSION}-pointsman{suffix}-report.yaml"
    path.write_text(yaml.safe_dump(report, sort_keys=False))
    (args.out / f"{GATEWAY_API_VERSION}-pointsman{suffix}-results.yaml").write_text(
        yaml.safe_dump(results_file(outcomes, args.proxy), sort_keys=False, width=100))
    print(f"wrote {path} ({time.monotonic() - started:.0f} s)")
    return 1 if any(item.result == "failed" for item in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
