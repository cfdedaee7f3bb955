from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import settings

# Property tests check behaviour, not speed: on a loaded CI machine an example can take longer
# than Hypothesis's 200 ms default deadline, which would fail a correct test.
settings.register_profile("pointsman", deadline=None)
settings.load_profile("pointsman")

# asyncio debug mode in tests: slow callbacks and never-awaited coroutines become visible.
os.environ.setdefault("PYTHONASYNCIODEBUG", "1")

STRICT_SKIPS = os.environ.get("POINTSMAN_STRICT_SKIPS") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, None]:
    """Under POINTSMAN_STRICT_SKIPS (set by .ci/run) a skipped test fails: in CI every tool
    a test needs is installed, so a skip means a broken install step, not a green test."""
    outcome = yield
    report = outcome.get_result()
    if STRICT_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped under POINTSMAN_STRICT_SKIPS: {reason}"
