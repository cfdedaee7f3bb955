"""`python -m tests.conformance.gateway_api.run_report [--out DIR] [--proxy envoy]`: runs the
translated mesh tests (MESH-HTTP, MESH-GRPC) end to end, as test_mesh_conformance.py does, and
writes the ConformanceReport (report.py, the upstream format) to
`DIR/<gateway API version>-pointsman-report.yaml` (DIR: docs/conformance), with a results file
beside it listing every test as passed, failed (why) or not run (why). Prints each result as it
comes. Exit status 1 when a test failed.
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

from tests.conformance.gateway_api.mesh_runner import SUPPORTED_FEATURES, MeshHarness, Outcome
from tests.conformance.gateway_api.mesh_suite import MESH_PROFILES, MESH_TESTS
from tests.conformance.gateway_api.report import (
    FAILED,
    NOT_SUPPORTED,
    SUCCEEDED,
    conformance_report,
)

REPO = Path(__file__).resolve().parents[3]
# `git describe --tags` of the commit in upstream/UPSTREAM (a main-branch snapshot: no release)
GATEWAY_API_VERSION = "monthly-2026.06-120-g4564255ac"
CHANNEL = "standard"
RESULTS = {"passed": SUCCEEDED, "failed": FAILED, "skipped": NOT_SUPPORTED}


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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_report", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "conformance")
    parser.add_argument("--proxy", choices=["pointsman", "envoy"], default="pointsman",
                        help="the sidecar every workload runs")
    args = parser.parse_args(argv)
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with MeshHarness(proxy=args.proxy) as harness:
        for test in MESH_TESTS:
            outcome = harness.run(test)
            outcomes.append(outcome)
            print(f"{outcome.name}: {outcome.result}"
                  + (f" ({outcome.reason})" if outcome.reason else ""), flush=True)
    by_name = {test.short_name: test for test in MESH_TESTS}
    report = conformance_report(
        [(by_name[item.name], RESULTS[item.result]) for item in outcomes], MESH_PROFILES,
        supported=SUPPORTED_FEATURES, implementation=implementation(),
        gateway_api_version=GATEWAY_API_VERSION, channel=CHANNEL,
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
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
