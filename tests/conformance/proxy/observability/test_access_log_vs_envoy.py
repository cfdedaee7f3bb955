"""Differential: the same access-log config on real Envoy and on the sidecar logs the same
fields for the same requests (text format with Envoy's operators, and json_format)."""

from __future__ import annotations

import json
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.proxy.observability.http_support import (
    FILE_LOG,
    RecordingBackend,
    bootstrap,
    cluster,
    get,
    hcm,
    http_listener,
)
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.conformance

TEXT_FORMAT = ("%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL% %RESPONSE_CODE% "
               "%RESPONSE_FLAGS% %BYTES_RECEIVED% %UPSTREAM_CLUSTER% %ROUTE_NAME% "
               "%REQ(USER-AGENT)% %REQ(X-MISSING):3% %UPSTREAM_HOST% "
               "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %REQUEST_HEADER(X-TAG?X-OTHER)%\n")
JSON_FORMAT = {"method": "%REQ(:METHOD)%", "code": "%RESPONSE_CODE%",
               "bytes_in": "%BYTES_RECEIVED%", "cluster": "%UPSTREAM_CLUSTER%",
               "flags": "%RESPONSE_FLAGS%",
               "missing": "%RESP(X-NOPE)%", "mixed": "%PROTOCOL% to %UPSTREAM_CLUSTER%"}


def access_logs(directory: Path) -> list[dict[str, Any]]:
    return [
        {"name": "text", "typed_config": {"@type": FILE_LOG, "path": str(directory / "text.log"),
                                          "log_format": {"text_format": TEXT_FORMAT}}},
        {"name": "json", "typed_config": {"@type": FILE_LOG, "path": str(directory / "json.log"),
                                          "log_format": {"json_format": JSON_FORMAT}}},
        {"name": "default", "typed_config": {"@type": FILE_LOG,
                                             "path": str(directory / "default.log")}},
    ]


def run_requests(start: Callable[[dict[str, Any]], ManagedProcess], backend_port: int,
                 closed_port: int) -> dict[str, list[str]]:
    directory = Path(tempfile.mkdtemp(prefix="access-log-"))
    port, dead_port = free_port(), free_port()
    config = bootstrap(
        [http_listener("live", port, hcm("backend", access_log=access_logs(directory))),
         http_listener("dead", dead_port, hcm("closed", access_log=access_logs(directory)))],
        [cluster("backend", backend_port), cluster("closed", closed_port)])
    process = start(config)
    try:
        process.wait_ready()  # type: ignore[attr-defined]
        assert get(f"http://127.0.0.1:{port}/a/b?q=1",
                   {"user-agent": "diff-test", "x-other": "other"})[0] == 200
        with pytest.raises(Exception, match="503"):
            get(f"http://127.0.0.1:{dead_port}/x", {"user-agent": "diff-test"})
        return wait_for_lines(directory, 2)
    finally:
        process.stop()


def wait_for_lines(directory: Path, count: int, timeout: float = 15.0) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        logs = {name: (directory / f"{name}.log").read_text().splitlines()
                if (directory / f"{name}.log").exists() else []
                for name in ("text", "json", "default")}
        if all(len(lines) >= count for lines in logs.values()) or time.monotonic() > deadline:
            return logs
        time.sleep(0.1)


def comparable_default(line: str) -> list[str]:
    """Envoy's default format without what differs by run: start time, duration, upstream
    service time, request id and authority (each proxy listens on its own port)."""
    fields = line.split(" ")
    # [1:8] method path protocol code flags bytes-in bytes-out; [10] XFF; [11] UA; [14] host
    return [*fields[1:8], fields[10], fields[11], fields[14]]


Logs = dict[str, list[str]]


@pytest.fixture(scope="module")
def both_logs() -> tuple[Logs, Logs]:
    """(Envoy's logs, ours) for the same two requests: a 200 and a refused-connection 503."""
    backend = RecordingBackend("backend")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    closed_port = closed.getsockname()[1]
    try:
        envoy_logs = run_requests(lambda c: Envoy(c, name="envoy-access-log"), backend.port,
                                  closed_port)
        ours = run_requests(lambda c: Pointsman(c, name="pointsman-access-log"), backend.port,
                            closed_port)
    finally:
        backend.stop()
        closed.close()
    return envoy_logs, ours


def lines_with_code(logs: Logs, code: int) -> tuple[list[str], list[Any], list[list[str]]]:
    text = [line for line in logs["text"] if f" {code} " in line]
    records = [record for record in map(json.loads, logs["json"]) if record["code"] == code]
    default = [comparable_default(line) for line in logs["default"] if f" {code} " in line]
    return text, records, default


def test_proxied_request_logs_match_envoy(both_logs: tuple[Logs, Logs]) -> None:
    envoy_logs, ours = both_logs
    assert lines_with_code(envoy_logs, 200)[0], envoy_logs
    assert lines_with_code(ours, 200) == lines_with_code(envoy_logs, 200)


def test_connect_failure_logs_match_envoy(both_logs: tuple[Logs, Logs]) -> None:
    envoy_logs, ours = both_logs
    assert lines_with_code(envoy_logs, 503)[0], envoy_logs
    assert lines_with_code(ours, 503) == lines_with_code(envoy_logs, 503)
