"""A screenshot of one whole trace in Phoenix's UI, taken in headless Chromium (Debian
`chromium`): `make demo DURATION=30` with `--screenshot docs/images/phoenix-trace.png` calls
`take(...)` once the trace is back from Phoenix's API. The flags are the ones that work on a
closed network (no background networking, no component updates, a fresh profile)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--window-size=1600,1000", "--virtual-time-budget=20000")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def trace_url(phoenix_base: str, project: str, trace_id: str) -> str:
    """Phoenix's page of one trace: /projects/<project id>/traces/<trace id>, the project id
    from its REST API (GET /v1/projects)."""
    with urllib.request.urlopen(f"{phoenix_base}/v1/projects", timeout=10) as response:
        projects = json.loads(response.read())["data"]
    project_id = next(item["id"] for item in projects if item["name"] == project)
    return f"{phoenix_base}/projects/{project_id}/traces/{trace_id}"


def take(url: str, path: Path) -> None:
    binary = chromium()
    if binary is None:
        raise RuntimeError("no chromium (Debian: apt-get install chromium)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}",
                        f"--screenshot={path.resolve()}", url],
                       check=True, timeout=120, capture_output=True)
