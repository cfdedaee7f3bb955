"""A proxy started from a bootstrap dict with its admin on a free loopback port: the base of
`tests.support.envoy.Envoy` (the reference) and `tests.support.pointsman.Pointsman` (ours), so
tests drive both through the same admin calls."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get


class AdminProxy(ManagedProcess):
    def __init__(self, bootstrap: dict[str, Any], argv_for: Any, *, name: str) -> None:
        self.admin_port = free_port()
        bootstrap = dict(bootstrap)
        bootstrap["admin"] = {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": self.admin_port}}}
        self.config_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".json")[1])
        self.config_path.write_text(json.dumps(bootstrap))
        argv: Sequence[str] = argv_for(self.config_path)
        super().__init__(argv, name=name)

    def admin(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.admin_port}{path}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: self.admin("/ready")[0] == 200, timeout, "ready")

    def stat(self, name: str) -> int:
        """One stat's value from the admin `/stats` page (0 when absent, as Envoy omits it)."""
        _status, body = self.admin(f"/stats?filter=^{name}$")
        for line in body.splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
        return 0
