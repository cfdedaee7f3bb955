"""Envoy 1.40 at its file descriptor limit, for tests/integration/proxy/test_descriptor_limit.py:
it raises the soft RLIMIT_NOFILE to the hard one at start, as the sidecar does; but with its
descriptors held by idle clients, a new connection waits unanswered in the backlog and the
admin `/ready` times out too (Envoy's default: no global connection limit; its
`envoy.resource_monitors.global_downstream_max_connections` overload monitor would refuse
connections, it warns about that at start). The sidecar refuses such connections at once and
keeps its admin reachable instead: a deliberate difference (issue 11)."""

from __future__ import annotations

import json
import resource
import socket
from pathlib import Path

import pytest

from tests.integration.proxy.test_startup_errors import plain_bootstrap
from tests.support.envoy import envoy_binary
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get

pytestmark = pytest.mark.conformance

SOFT, HARD = 32, 64


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT, HARD))


def waits_unanswered(port: int, timeout: float = 3.0) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        try:
            sock.recv(100)
        except TimeoutError:
            return True
    return False


def test_envoy_at_the_descriptor_limit(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(plain_bootstrap(port, admin_port)))
    argv = [envoy_binary(), "-c", str(path), "--base-id", str(free_port()),
            "--disable-hot-restart", "--log-level", "warn", "--concurrency", "1"]
    with ManagedProcess(argv, name="envoy-limited", preexec_fn=limited) as envoy:
        envoy.wait_until(lambda: http_get(f"http://127.0.0.1:{admin_port}/ready")[0] == 200,
                         30, "ready")
        limits = Path(f"/proc/{envoy.pid}/limits").read_text()
        assert f"Max open files            {HARD}                   {HARD}" in limits
        held = [socket.create_connection(("127.0.0.1", port), timeout=10)
                for _ in range(HARD + 10)]
        try:
            assert waits_unanswered(port)
            with pytest.raises(TimeoutError):
                http_get(f"http://127.0.0.1:{admin_port}/ready", timeout=3)
        finally:
            for sock in held:
                sock.close()
        envoy.wait_until(lambda: http_get(f"http://127.0.0.1:{admin_port}/ready")[0] == 200,
                         30, "ready again")
        assert not waits_unanswered(port)
