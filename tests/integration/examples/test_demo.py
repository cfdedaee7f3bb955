"""`make demo` end to end: the same topology with Pointsman sidecars and with real Envoy ones.

The demo itself checks what it shows (three backends answer round robin; after the live EDS
change backend-3 no longer does; with tracing on, every request arrives at the collector as one
trace: frontend sidecar ingress -> its egress -> backend sidecar ingress) and exits non-zero
otherwise; these tests hold it to that, tracing on as `make demo` runs it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.processes import REPO

pytestmark = pytest.mark.slow


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo" / "run.py"), "--requests", "12", *args],
        capture_output=True, text=True, timeout=150, check=False,
    )


@pytest.mark.parametrize("sidecar", ["pointsman", "envoy"])
def test_demo_routes_applies_a_live_endpoint_change_and_traces(sidecar: str) -> None:
    result = run_demo("--sidecar", sidecar)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "answered by {'backend-1': 4, 'backend-2': 4, 'backend-3': 4}" in result.stdout
    assert "after the change: 12 requests, answered by {'backend-1': 6, 'backend-2': 6}" in (
        result.stdout)
    # 24 requests, each one trace of three spans (two per request from the frontend sidecar,
    # one from the backend's), linked parent to child.
    assert ("traces: 24 of 24 requests traced through both sidecars (24 traces, 72 spans at "
            "the collector)") in result.stdout
    assert "sidecar-backend    SERVER  ingress" in result.stdout
