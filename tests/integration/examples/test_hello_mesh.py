"""The README's hello mesh, run as the README says (examples/hello/run.sh): a control plane
on the mesh file, api and api-v2 each under `pointsman run`, web's sidecar from
`pointsman sidecar`, and 100 calls to `api` by name through web's sidecar: every one answered
by a version, api-v2 about 10% of the time (none in 100 at 10%: 2.7e-5)."""

from __future__ import annotations

import re
import subprocess

from tests.support.processes import REPO


def test_hello_mesh_runs_as_documented() -> None:
    done = subprocess.run([str(REPO / "examples" / "hello" / "run.sh")], capture_output=True,
                          text=True, timeout=180, start_new_session=True)
    assert done.returncode == 0, done.stdout + done.stderr
    counts = {name: int(count) for count, name in re.findall(r"^\s*(\d+) (api-v\d)$",
                                                             done.stdout, re.MULTILINE)}
    assert set(counts) == {"api-v1", "api-v2"} and sum(counts.values()) == 100, done.stdout
    assert 1 <= counts["api-v2"] <= 30, counts  # weight 10 of 100
