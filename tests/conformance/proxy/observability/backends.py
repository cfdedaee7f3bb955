"""Real observability backends started by the tests: Arize Phoenix and Prometheus.

Phoenix (PyPI `arize-phoenix`) lives in its own virtualenv, `.venv-phoenix/` at the repository
root (or `PHOENIX_BIN`), because installing it into `.venv` adds a pytest plugin that fails under
`-W error`. Prometheus is Debian's `prometheus` package (`/usr/bin/prometheus` or
`PROMETHEUS_BIN`). Both listen on free loopback ports and are stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import REPO, ManagedProcess, http_get


def phoenix_binary() -> str | None:
    candidates = [os.environ.get("PHOENIX_BIN", ""), str(REPO / ".venv-phoenix" / "bin" /
                                                         "phoenix")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def prometheus_binary() -> str | None:
    return os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")


class Phoenix(ManagedProcess):
    """`phoenix serve`: OTLP gRPC on `grpc_port`, OTLP/HTTP + REST API on `http_port`."""

    def __init__(self, binary: str) -> None:
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="phoenix-"))
        super().__init__([binary, "serve"], name="phoenix", env={
            "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(self.http_port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port), "PHOENIX_WORKING_DIR": str(self.workdir),
            "PHOENIX_TELEMETRY_ENABLED": "false",
        })

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.wait_until(lambda: http_get(self.url("/healthz"))[0] == 200, timeout, "healthy")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Phoenix REST API: GET /v1/projects/{project}/spans (newest first)."""
        quoted = urllib.parse.quote(project, safe="")
        status, body = http_get(self.url(f"/v1/projects/{quoted}/spans?limit=1000"))
        if status != 200:
            return []
        return list(json.loads(body).get("data", []))

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Prometheus(ManagedProcess):
    """A Prometheus server scraping `targets` (host:port) at `metrics_path` every second."""

    def __init__(self, binary: str, targets: list[str], metrics_path: str) -> None:
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="prometheus-"))
        config = self.workdir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
            "scrape_configs": [{"job_name": "pointsman", "metrics_path": metrics_path,
                                "static_configs": [{"targets": targets}]}],
        }))
        super().__init__([binary, f"--config.file={config}",
                          f"--storage.tsdb.path={self.workdir / 'data'}",
                          f"--web.listen-address=127.0.0.1:{self.port}",
                          "--log.level=warn"], name="prometheus")

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_until(
            lambda: http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] == 200, timeout, "ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        quoted = urllib.parse.quote(promql)
        status, body = http_get(f"http://127.0.0.1:{self.port}/api/v1/query?query={quoted}")
        if status != 200:
            return []
        return list(json.loads(body)["data"]["result"])

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)
