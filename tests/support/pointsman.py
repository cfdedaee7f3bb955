"""`pointsman proxy -c BOOTSTRAP` as a test process, driven like `tests.support.envoy.Envoy`."""

from __future__ import annotations

from typing import Any

from tests.support.processes import python_argv
from tests.support.proxies import AdminProxy


class Pointsman(AdminProxy):
    def __init__(self, bootstrap: dict[str, Any], *, name: str = "pointsman",
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(bootstrap, lambda path: python_argv(
            "-m", "proxy", "-c", str(path), "--log-level", "warn", *extra_args), name=name)
