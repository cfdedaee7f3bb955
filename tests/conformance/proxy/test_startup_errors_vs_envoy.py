"""Envoy 1.40 on the bootstraps of tests/integration/proxy/test_startup_errors.py: it exits
with status 1 for each, as the sidecar does, naming the same cause. The sidecar's one-line
messages are checked there; here, that Envoy refuses to start too (the reference)."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.test_startup_errors import (
    EXIT_TIMEOUT,
    occupied,  # noqa: F401  (fixture)
    plain_bootstrap,
    run_proxy,
    unknown_cluster_bootstrap,
)
from tests.support.envoy import envoy_binary
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance


def run_envoy(tmp_path: Path, bootstrap: dict[str, Any]) -> tuple[int, str]:
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(bootstrap))
    done = subprocess.run([envoy_binary(), "-c", str(path), "--base-id", str(free_port()),
                           "--disable-hot-restart", "--log-level", "critical"],
                          capture_output=True, text=True, timeout=EXIT_TIMEOUT,
                          start_new_session=True)
    return done.returncode, done.stdout + done.stderr


def test_unknown_cluster_in_an_inline_route(tmp_path: Path) -> None:
    bootstrap = unknown_cluster_bootstrap(free_port(), free_port())
    envoy_code, envoy_output = run_envoy(tmp_path, bootstrap)
    ours_code, ours_output = run_proxy(tmp_path, bootstrap)
    assert envoy_code == ours_code == 1
    assert "unknown cluster 'nope'" in envoy_output
    assert "unknown cluster 'nope'" in ours_output


def test_listener_address_in_use(tmp_path: Path, occupied: socket.socket) -> None:  # noqa: F811
    port = occupied.getsockname()[1]
    bootstrap = plain_bootstrap(port, free_port())
    envoy_code, envoy_output = run_envoy(tmp_path, bootstrap)
    ours_code, ours_output = run_proxy(tmp_path, bootstrap)
    assert envoy_code == ours_code == 1
    assert f"cannot bind '127.0.0.1:{port}': Address already in use" in envoy_output
    assert f"127.0.0.1:{port}: cannot listen: Address already in use" in ours_output


def test_admin_address_in_use(tmp_path: Path, occupied: socket.socket) -> None:  # noqa: F811
    admin_port = occupied.getsockname()[1]
    bootstrap = plain_bootstrap(free_port(), admin_port)
    envoy_code, envoy_output = run_envoy(tmp_path, bootstrap)
    ours_code, ours_output = run_proxy(tmp_path, bootstrap)
    assert envoy_code == ours_code == 1
    assert f"cannot bind '127.0.0.1:{admin_port}': Address already in use" in envoy_output
    assert f"127.0.0.1:{admin_port}: cannot listen: Address already in use" in ours_output
