"""A ConformanceReport in the upstream format (conformance/apis/v1, written as the suite's
utils/suite/reports.go compiles it) from the results of the translated tests.

Bookkeeping as upstream: a result counts in every profile whose core and extended features
together name all the test's features; it is extended in a profile when it names a feature
outside the profile's core; NOT_SUPPORTED and PROVISIONAL_SKIPPED results count nowhere; a
profile's core or extended result is failure with a failed test, partial with a skipped one,
success otherwise; provisional tests that passed are listed apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

SUCCEEDED, FAILED, SKIPPED = "SUCCEEDED", "FAILED", "SKIPPED"
NOT_SUPPORTED, PROVISIONAL_SKIPPED = "NOT_SUPPORTED", "PROVISIONAL_SKIPPED"


class Test(Protocol):
    short_name: str
    features: tuple[str, ...]
    provisional: bool


@dataclass(frozen=True)
class Profile:
    name: str
    core: frozenset[str]
    extended: frozenset[str]

    def has(self, test: Test) -> bool:
        return frozenset(test.features) <= self.core | self.extended

    def is_extended(self, test: Test) -> bool:
        return not frozenset(test.features) <= self.core


@dataclass
class _Status:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failed_tests: list[str] | None = None
    skipped_tests: list[str] | None = None

    def add(self, name: str, result: str) -> None:
        if result == SUCCEEDED:
            self.passed += 1
        elif result == FAILED:
            self.failed += 1
            self.failed_tests = [*(self.failed_tests or []), name]
        elif result == SKIPPED:
            self.skipped += 1
            self.skipped_tests = [*(self.skipped_tests or []), name]

    def result(self) -> str:
        if self.failed:
            return "failure"
        return "partial" if self.skipped else "success"

    def summary(self) -> str:
        result = self.result()
        if result == "success":
            return "succeeded"
        if result == "partial":
            return f"partially succeeded with {self.skipped} test skips"
        return f"failed with {self.failed} test failures"

    def as_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.result(), "statistics": {
            "Failed": self.failed, "Passed": self.passed, "Skipped": self.skipped}}
        if self.failed_tests:
            out["failedTests"] = self.failed_tests
        if self.skipped_tests:
            out["skippedTests"] = self.skipped_tests
        return out


def conformance_report(results: Iterable[tuple[Test, str]], profiles: Sequence[Profile], *,
                       supported: Iterable[str], implementation: Mapping[str, Any],
                       gateway_api_version: str, channel: str, date: str,
                       mode: str = "default") -> dict[str, Any]:
    """The report as a YAML-ready mapping (upstream key order)."""
    supported_set = frozenset(supported)
    by_name = sorted(results, key=lambda item: item[0].short_name)
    cores: dict[str, _Status] = {}
    extendeds: dict[str, _Status] = {}
    provisional_passed = []
    for test, result in by_name:
        if result == PROVISIONAL_SKIPPED:
            continue
        if result == SUCCEEDED and test.provisional:
            provisional_passed.append(test.short_name)
        for profile in profiles:
            if not profile.has(test):
                continue
            cores.setdefault(profile.name, _Status())
            if result not in (SUCCEEDED, FAILED, SKIPPED):
                continue  # NOT_SUPPORTED: the profile is listed, nothing is counted
            table = extendeds if profile.is_extended(test) else cores
            table.setdefault(profile.name, _Status()).add(test.short_name, result)
    reports = []
    for profile in profiles:
        if profile.name not in cores:
            continue
        core = cores[profile.name]
        entry: dict[str, Any] = {"core": core.as_yaml()}
        summary = f"Core tests {core.summary()}"
        extended = extendeds.get(profile.name)
        if extended is not None:
            entry["extended"] = extended.as_yaml()
            entry["extended"]["supportedFeatures"] = sorted(profile.extended & supported_set)
            unsupported = sorted(profile.extended - supported_set)
            if unsupported:
                entry["extended"]["unsupportedFeatures"] = unsupported
            summary += f". Extended tests {extended.summary()}"
        entry["name"] = profile.name
        entry["summary"] = summary + "."
        reports.append(entry)
    report: dict[str, Any] = {
        "apiVersion": "gateway.networking.k8s.io/v1", "date": date,
        "gatewayAPIChannel": channel, "gatewayAPIVersion": gateway_api_version,
        "implementation": dict(implementation), "kind": "ConformanceReport", "mode": mode,
        "profiles": reports}
    if provisional_passed:
        report["succeededProvisionalTests"] = provisional_passed
    return report
