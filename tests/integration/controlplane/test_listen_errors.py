"""`pointsman controlplane` processes and addresses in use: a second control plane on the same
`--listen` exits 1 with one line naming the setting (it used to start too, gRPC's
SO_REUSEPORT sharing the port, and the kernel split the sidecars between the two
configurations), and so does one whose `--admin` is taken; the first one keeps serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, python_argv

EXIT_TIMEOUT = 30.0


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    path = tmp_path / "resources.yaml"
    path.write_text('version_info: "1"\nresources: []\n')
    return path


@pytest.fixture
def first(resources: Path) -> Iterator[tuple[int, int]]:
    """A running control plane: (xDS port, admin port)."""
    listen, admin = free_port(), free_port()
    with ManagedProcess(python_argv("-m", "controlplane", "--resources", str(resources),
                                    "--listen", f"127.0.0.1:{listen}",
                                    "--admin", f"127.0.0.1:{admin}"),
                        name="controlplane-first") as process:
        process.wait_until(lambda: _accepts(listen) and _accepts(admin), 30, "listening")
        yield listen, admin
        assert process.alive()  # the second one did not disturb it


def _accepts(port: int) -> bool:
    try:
        wait_for_port(port, timeout=0.1)
    except TimeoutError:
        return False
    return True


def run_controlplane(resources: Path, *args: str) -> tuple[int, str]:
    # As a user runs it: without the tests' asyncio debug mode, whose slow-callback warnings
    # (on a loaded machine) would add lines to the one-line error.
    env = {**os.environ, "PYTHONASYNCIODEBUG": ""}
    done = subprocess.run([sys.executable, "-m", "controlplane", "--resources", str(resources),
                           *args], capture_output=True, text=True, timeout=EXIT_TIMEOUT,
                          start_new_session=True, env=env)
    return done.returncode, done.stdout + done.stderr


def test_a_second_controlplane_on_the_same_listen_address_exits(
        resources: Path, first: tuple[int, int]) -> None:
    listen, _admin = first
    code, output = run_controlplane(resources, "--listen", f"127.0.0.1:{listen}")
    assert code == 1
    assert output == (f"pointsman controlplane: --listen 127.0.0.1:{listen}: cannot listen: "
                      "Address already in use\n")


def test_an_admin_address_in_use_exits(resources: Path, first: tuple[int, int]) -> None:
    _listen, admin = first
    code, output = run_controlplane(resources, "--listen", f"127.0.0.1:{free_port()}",
                                    "--admin", f"127.0.0.1:{admin}")
    assert code == 1
    assert output == (f"pointsman controlplane: --admin 127.0.0.1:{admin}: cannot listen: "
                      "Address already in use\n")


def test_a_listen_port_held_by_another_program_exits(resources: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]
        code, output = run_controlplane(resources, "--listen", f"127.0.0.1:{port}")
    assert code == 1
    assert output == (f"pointsman controlplane: --listen 127.0.0.1:{port}: cannot listen: "
                      "Address already in use\n")
