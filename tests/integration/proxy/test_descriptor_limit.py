"""The real sidecar process at its file descriptor limit (proxy.descriptors): it raised the soft
RLIMIT_NOFILE to the hard one at start, as Envoy does; with every descriptor held by idle
client connections, new connections are refused cleanly (EOF at once, counted in
downstream_global_cx_overflow) and the admin `/ready` and `/stats` still answer; once the
clients go, connections are served again. (Envoy 1.40 under `prlimit --nofile=64:64` lets new
connections and its admin time out instead: measured, see proxy/descriptors.py.)"""

from __future__ import annotations

import contextlib
import json
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.proxy.test_startup_errors import plain_bootstrap
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get, python_argv

SOFT, HARD = 48, 160  # the process starts with 48 and raises it to 160
CLIENTS = 220  # more than the sidecar can hold


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[ManagedProcess, int, int]]:
    port, admin_port = free_port(), free_port()
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(plain_bootstrap(port, admin_port)))
    with ManagedProcess(python_argv("-m", "proxy", "-c", str(path), "--log-level", "warn"),
                        name="limited-proxy", preexec_fn=limited,
                        env={"PYTHONASYNCIODEBUG": ""}) as process:
        process.wait_until(lambda: http_get(f"http://127.0.0.1:{admin_port}/ready")[0] == 200,
                           60, "ready")
        yield process, port, admin_port


def stat(admin_port: int, name: str) -> int:
    _status, body = http_get(f"http://127.0.0.1:{admin_port}/stats?filter=^{name}$", timeout=10)
    for line in body.splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def answered(port: int) -> bytes:
    """What one GET gets: a response, or b"" when the connection is closed unanswered (EOF,
    or RST: closing a socket with the request unread resets it, RFC 2525 2.17). A hang
    raises TimeoutError."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.settimeout(10)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            return sock.recv(100)
        except ConnectionResetError:
            return b""


def test_at_the_descriptor_limit_admin_answers_and_new_connections_are_refused(
        proxy: tuple[ManagedProcess, int, int]) -> None:
    process, port, admin_port = proxy
    scope = f"listener.127.0.0.1_{port}."
    limits = Path(f"/proc/{process.pid}/limits").read_text()
    assert f"Max open files            {HARD}                  {HARD}" in limits
    held: list[socket.socket] = []
    try:
        for _ in range(CLIENTS):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # Every descriptor the sidecar has is in use by now, or soon: what it cannot take is
        # refused (closed) rather than left waiting in the backlog.
        deadline = time.monotonic() + 30
        while stat(admin_port, scope + "downstream_global_cx_overflow") == 0:
            assert time.monotonic() < deadline, process.output()[-3000:]
            time.sleep(0.2)
        # An admin connection accepted while descriptors were left frees one when it closes;
        # a few more clients take any such descriptor, so that none is free below.
        held += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        time.sleep(0.5)
        assert http_get(f"http://127.0.0.1:{admin_port}/ready", timeout=10) == (200, "LIVE\n")
        assert answered(port) == b""  # a new connection: refused at once, not a hang
        refused = 0
        for sock in held:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                refused += sock.recv(1) == b""  # closed by the sidecar: EOF
        overflow = stat(admin_port, scope + "downstream_global_cx_overflow")
        assert refused > 0 and overflow >= refused + 1
        served = stat(admin_port, scope + "downstream_cx_total")
        assert served + overflow >= CLIENTS + 5 + 1
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 30
    while not answered(port).startswith(b"HTTP/1.1 200"):  # descriptors came back
        assert time.monotonic() < deadline
        time.sleep(0.2)
    output = process.output()
    assert "Traceback" not in output and "ERROR" not in output
    assert output.count("refusing new connections") == 1
    assert "retrying in" not in output  # the spare did it: no backing off
