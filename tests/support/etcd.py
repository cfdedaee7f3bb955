"""etcd (Debian's etcd-server) started by the tests themselves, on free loopback ports, with
its data in a temporary folder; stopped by PID. Limits raised for big applies (one transaction
per apply): --max-txn-ops 16384, --max-request-bytes 32 MiB."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import ManagedProcess, http_get

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def available() -> bool:
    return Path(ETCD).exists()


class EtcdServer(ManagedProcess):
    def __init__(self, name: str = "etcd") -> None:
        self.port = free_port()
        self.peer_port = free_port()
        self.data = Path(tempfile.mkdtemp(prefix="etcd-"))
        client = f"http://127.0.0.1:{self.port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        super().__init__([ETCD, "--name", name, "--data-dir", str(self.data / "data"),
                          "--listen-client-urls", client, "--advertise-client-urls", client,
                          "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                          "--initial-cluster", f"{name}={peer}",
                          "--max-txn-ops", "16384", "--max-request-bytes", "33554432",
                          "--log-level", "warn"], name=name)

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: '"health":"true"' in http_get(
            f"http://127.0.0.1:{self.port}/health")[1], timeout, "healthy")

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.data, ignore_errors=True)
