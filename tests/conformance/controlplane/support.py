"""Shared by the control-plane conformance tests: our server as a process, tiny backends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, http_get, python_argv


class ControlPlane(ManagedProcess):
    """`python -m controlplane` on free loopback ports, serving `resources` (file or folder)."""

    def __init__(self, resources: Path, *extra: str) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        super().__init__(python_argv("-m", "controlplane", "--resources", str(resources),
                                     "--listen", f"127.0.0.1:{self.port}",
                                     "--admin", f"127.0.0.1:{self.admin_port}",
                                     "--poll-interval", "0.2", *extra), name="controlplane")

    def wait_ready(self, timeout: float = 30.0) -> None:
        self.wait_until(lambda: self.admin("/ready")[0] == 200, timeout, "ready")
        wait_for_port(self.port)

    def admin(self, path: str) -> tuple[int, str]:
        return http_get(f"http://127.0.0.1:{self.admin_port}{path}")

    def status(self) -> dict[str, Any]:
        return dict(json.loads(self.admin("/status")[1]))


def write_resources(path: Path, resources: list[dict[str, Any]]) -> None:
    """Write atomically (rename), as editors and config tools do, so no half file is read."""
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(yaml.safe_dump({"resources": resources}))
    partial.replace(path)


@contextmanager
def http_backend(name: str) -> Iterator[int]:
    """An HTTP/1.1 server on a free port answering every GET with its `name`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = name.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"backend-{name}", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
