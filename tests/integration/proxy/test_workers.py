"""`--concurrency 2`: two worker processes share the listener (SO_REUSEPORT), one ADS-free
static config, stats merged at the parent's admin endpoint."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

from tests.conformance.proxy.observability.http_support import (
    bootstrap as http_bootstrap,
)
from tests.conformance.proxy.observability.http_support import (
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.integration.proxy.helpers import (
    TaggedServer,
    listener,
    read_line,
    static_cluster,
    tcp_proxy,
)
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


def test_two_workers_share_a_listener_and_merge_stats() -> None:
    backend = TaggedServer("a")
    port = free_port()
    bootstrap = {"static_resources": {
        "listeners": [listener("l4", port, [{"filters": [tcp_proxy("backend")]}])],
        "clusters": [static_cluster("backend", [backend.port])],
    }}
    try:
        with Pointsman(bootstrap, extra_args=("--concurrency", "2")) as proxy:
            proxy.wait_ready()
            connections = 40
            for _ in range(connections):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    assert read_line(sock) == "a"
            proxy.wait_until(lambda: proxy.stat("tcp.tcp.downstream_cx_total") == connections,
                             10, "all counted")
            assert proxy.stat("cluster.backend.upstream_cx_total") == connections
            # Shared state is not multiplied by the number of workers.
            assert proxy.stat("cluster.backend.membership_total") == 1
            # Two worker processes are children of the proxy.
            children = _children(proxy.pid)
            assert len(children) == 2, children
            # A worker that dies is replaced, with the config, and traffic keeps flowing.
            os.kill(children[0], signal.SIGKILL)
            proxy.wait_until(lambda: len(_children(proxy.pid)) == 2
                             and children[0] not in _children(proxy.pid), 20, "restarted")
            proxy.wait_ready()
            for _ in range(10):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    assert read_line(sock) == "a"
    finally:
        backend.stop()


FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"


def test_the_parent_validates_access_logs_and_tracing_without_running_them(
        tmp_path: Path) -> None:
    """The parent builds every listener to NACK what its workers could not apply, but it
    serves no traffic: it opens no access-log file (nor, tested in tests/unit/proxy/observability,
    any exporter thread); each worker does."""
    log = tmp_path / "access.log"
    manager = hcm("backend", tracing=opentelemetry_tracing("otel", "svc"),
                  access_log=[{"name": "envoy.access_loggers.file",
                               "typed_config": {"@type": FILE_LOG, "path": str(log)}}])
    config = http_bootstrap([http_listener("http", free_port(), manager)],
                            [static_cluster("backend", [free_port()]),
                             grpc_cluster("otel", free_port())])
    with Pointsman(config, extra_args=("--concurrency", "2")) as proxy:
        proxy.wait_ready()
        children = _children(proxy.pid)
        assert len(children) == 2, children
        for worker in children:
            assert _opens(worker, log)
        assert not _opens(proxy.pid, log)


def _opens(pid: int, path: Path) -> bool:
    fds = f"/proc/{pid}/fd"
    return any(os.path.realpath(os.path.join(fds, fd)) == str(path) for fd in os.listdir(fds))



def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found
