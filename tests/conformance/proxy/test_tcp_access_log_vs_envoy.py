"""tcp_proxy access logs, same bootstrap to Envoy and `pointsman proxy`: one line per
connection with cluster, response flags, bytes and upstream host."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import (
    TaggedServer,
    listener,
    read_line,
    static_cluster,
    tcp_proxy,
)
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
FORMAT = "%UPSTREAM_CLUSTER% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT%\n"


def bootstrap(path: Path, ports: dict[str, int]) -> dict[str, Any]:
    log = [{"name": "envoy.access_loggers.file", "typed_config": {
        "@type": FILE_LOG, "path": str(path),
        "log_format": {"text_format_source": {"inline_string": FORMAT}}}}]
    return {"static_resources": {
        "listeners": [listener(name, port, [{"filters": [tcp_proxy(name, access_log=log)]}])
                      for name, port in ports.items() if name != "backend"],
        "clusters": [static_cluster("up", [ports["backend"]]),
                     static_cluster("down", [free_port()])],
    }}


def test_access_log_lines_match_envoy(tmp_path: Path) -> None:
    backend = TaggedServer("a")
    lines: dict[str, list[str]] = {}
    try:
        for kind in ("envoy", "pointsman"):
            path = tmp_path / f"{kind}.log"
            ports = {"up": free_port(), "down": free_port(), "backend": backend.port}
            config = bootstrap(path, ports)
            proxy = (Envoy(config, extra_args=("--concurrency", "1",
                                               "--file-flush-interval-msec", "100"))
                     if kind == "envoy" else Pointsman(config))
            with proxy:
                proxy.wait_ready()
                with socket.create_connection(("127.0.0.1", ports["up"]), timeout=5) as sock:
                    assert read_line(sock) == "a"
                    sock.sendall(b"hello")
                    assert sock.recv(5) == b"hello"
                with socket.create_connection(("127.0.0.1", ports["down"]), timeout=5) as sock:
                    assert read_line(sock) == ""
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    found = path.read_text().splitlines() if path.exists() else []
                    if len(found) == 2:
                        break
                    time.sleep(0.1)
                lines[kind] = sorted(found)
    finally:
        backend.stop()
    assert lines["pointsman"] == lines["envoy"]
    assert lines["envoy"] == ["down UF,URX 0 0", "up - 5 8"]
