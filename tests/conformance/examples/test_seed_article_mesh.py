"""The seed article's HAProxy configurations as mesh objects (examples/mesh/seed_article/):
the Gateways run by Envoy and by Pointsman, compiled from the same objects by the control
plane, pass the same traffic checks (the example's own, which `run.py` prints)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from examples.mesh.seed_article import run
from tests.support.processes import REPO

pytestmark = pytest.mark.conformance


@pytest.mark.parametrize("sidecar", ["envoy", "pointsman"])
def test_the_article_expressed_as_mesh_objects_passes_its_checks(sidecar: str) -> None:
    assert run.run(sidecar) == run.EXPECTED


def test_the_example_analyzes_clean() -> None:
    result = subprocess.run([sys.executable, "-c", "from controlplane.cli import main; "
                             "raise SystemExit(main())", "analyze", "-f",
                             str(REPO / "examples" / "mesh" / "seed_article")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert "0 error(s), 0 warning(s)" in result.stderr
