"""Child processes that tests start themselves and stop by PID, with their output kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"


class ManagedProcess:
    """A subprocess in its own process group; `stop()` kills the group and reaps it."""

    def __init__(self, argv: Sequence[str], *, name: str, env: dict[str, str] | None = None,
                 cwd: Path | None = None,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        """`preexec_fn` runs in the child before it starts (resource limits, say)."""
        self.name = name
        self.argv = list(argv)
        self.log = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        full_env = {**os.environ, **(env or {})}
        full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
        with open(self.log, "wb") as sink:
            self.popen = subprocess.Popen(
                self.argv, stdout=sink, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                start_new_session=True, preexec_fn=preexec_fn,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, check: Callable[[], bool], timeout: float = 20.0,
                   what: str = "ready") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited ({self.popen.returncode}) before {what}:\n"
                                   f"{self.output()[-4000:]}")
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not {what} after {timeout}s:\n{self.output()[-4000:]}")

    def stop(self, timeout: float = 5.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)
            except ProcessLookupError:
                pass
        self.popen.wait()

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name}, pid={self.pid}, log={self.log})"


def python_argv(*args: str) -> list[str]:
    """Run a module or script with the interpreter running the tests (the venv's)."""
    return [sys.executable, *args]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """A plain GET; returns (status, body) and does not raise on HTTP error statuses."""
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
