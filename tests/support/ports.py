"""Loopback ports picked free by the kernel."""

from __future__ import annotations

import socket
import time

_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel reports free, never one this process was given before: once a
    probe socket is closed the kernel may hand the same port to the next bind(0), so two
    picks in a row (a proxy and its admin, say) could collide (seen in `make demo`)."""
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no unused loopback port left")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 15.0) -> None:
    """Block until something accepts on host:port, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)
