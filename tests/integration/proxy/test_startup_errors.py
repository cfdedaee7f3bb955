"""Start-up errors end the real process (`python -m proxy -c ...`): exit status 1 and exactly
one line on stderr naming the field, or the address and its setting, before "started" is
logged; never a traceback, never a process that hangs without serving.
(tests/conformance/proxy/test_startup_errors_vs_envoy.py runs Envoy on the same bootstraps.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.ports import free_port

EXIT_TIMEOUT = 30.0  # generous: the machine is shared


def unknown_cluster_bootstrap(port: int, admin_port: int) -> dict[str, Any]:
    """An inline route naming a cluster nobody defines: found when the listener's HTTP
    connection manager is created (Envoy: "route: unknown cluster 'nope'")."""
    bootstrap = http_bootstrap(port, [{"match": {"prefix": "/"},
                                       "route": {"cluster": "nope"}}],
                               [static_cluster("known", [free_port()])])
    return with_admin(bootstrap, admin_port)


def plain_bootstrap(port: int, admin_port: int) -> dict[str, Any]:
    bootstrap = http_bootstrap(port, [{"match": {"prefix": "/"},
                                       "direct_response": {"status": 200}}], [])
    return with_admin(bootstrap, admin_port)


def with_admin(bootstrap: dict[str, Any], admin_port: int) -> dict[str, Any]:
    bootstrap["admin"] = {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": admin_port}}}
    return bootstrap


def run_proxy(tmp_path: Path, bootstrap: dict[str, Any], *extra: str) -> tuple[int, str]:
    """Run the sidecar until it exits; (exit status, everything it wrote)."""
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    # asyncio debug mode (tests/conftest.py) would add slow-callback warnings of its own.
    env = {"PYTHONASYNCIODEBUG": "", "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([sys.executable, "-m", "proxy", "-c", str(path), *extra],
                          capture_output=True, text=True, timeout=EXIT_TIMEOUT, env=env,
                          start_new_session=True)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def occupied() -> Iterator[socket.socket]:
    """A loopback port another process listens on (no SO_REUSEPORT)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_unknown_cluster_in_an_inline_route_exits_with_one_line(
        tmp_path: Path, concurrency: str) -> None:
    port = free_port()
    code, output = run_proxy(tmp_path, unknown_cluster_bootstrap(port, free_port()),
                             "--concurrency", concurrency)
    assert code == 1
    assert output == (
        "pointsman proxy: resource 'ingress': field 'filter_chains[0].filters[0]."
        "typed_config.route_config.virtual_hosts[0].routes[0].route.cluster': "
        "unknown cluster 'nope'\n")


def test_listener_address_in_use_exits_with_one_line(tmp_path: Path,
                                                     occupied: socket.socket) -> None:
    port = occupied.getsockname()[1]
    code, output = run_proxy(tmp_path, plain_bootstrap(port, free_port()))
    assert code == 1
    assert output == (f"pointsman proxy: listener 'ingress' address 127.0.0.1:{port}: "
                      "cannot listen: Address already in use\n")


def test_listener_address_in_use_with_workers_exits_with_one_line(
        tmp_path: Path, occupied: socket.socket) -> None:
    port = occupied.getsockname()[1]
    code, output = run_proxy(tmp_path, plain_bootstrap(port, free_port()),
                             "--concurrency", "2")
    assert code == 1
    assert output == (f"pointsman proxy: listener 'ingress' address 127.0.0.1:{port}: "
                      "cannot listen: Address already in use\n")


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_admin_address_in_use_exits_with_one_line(tmp_path: Path, occupied: socket.socket,
                                                  concurrency: str) -> None:
    admin_port = occupied.getsockname()[1]
    code, output = run_proxy(tmp_path, plain_bootstrap(free_port(), admin_port),
                             "--concurrency", concurrency)
    assert code == 1
    assert output == (f"pointsman proxy: admin.address 127.0.0.1:{admin_port}: "
                      "cannot listen: Address already in use\n")
