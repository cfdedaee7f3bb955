"""`pointsman proxy` from a static bootstrap: tcp_proxy end to end over loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.integration.proxy.helpers import (
    TaggedServer,
    listener,
    read_line,
    static_cluster,
    tcp_proxy,
)
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


@pytest.fixture
def backends() -> Iterator[list[TaggedServer]]:
    servers = [TaggedServer("a"), TaggedServer("b")]
    yield servers
    for server in servers:
        server.stop()


def test_tcp_proxy_passthrough_half_close_and_stats(backends: list[TaggedServer]) -> None:
    port = free_port()
    bootstrap = {
        "node": {"id": "test", "cluster": "test"},
        "static_resources": {
            "listeners": [listener("l4", port, [{"filters": [tcp_proxy("backend")]}])],
            "clusters": [static_cluster("backend", [backends[0].port])],
        },
    }
    with Pointsman(bootstrap) as proxy:
        proxy.wait_ready()  # listeners accept once ready
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            assert read_line(client) == "a"
            payload = bytes(range(256)) * 4096  # 1 MiB both ways
            client.sendall(payload)
            client.shutdown(socket.SHUT_WR)  # half-close: the echo must still come back
            received = bytearray()
            while chunk := client.recv(65536):
                received += chunk
            assert bytes(received) == payload
        proxy.wait_until(lambda: proxy.stat("tcp.tcp.downstream_cx_total") == 1, 10, "counted")
        assert proxy.stat("cluster.backend.upstream_cx_total") == 1
        assert proxy.stat(f"listener.127.0.0.1_{port}.downstream_cx_total") == 1
        assert proxy.stat("tcp.tcp.downstream_cx_rx_bytes_total") == len(payload)


def test_unsupported_field_stops_start_up_naming_it(tmp_path) -> None:
    bootstrap = {
        "static_resources": {
            "listeners": [listener("l4", free_port(), [{"filters": [tcp_proxy("backend")]}],
                                   use_original_dst=True)],
            "clusters": [static_cluster("backend", [1])],
        },
    }
    proxy = Pointsman(bootstrap)
    assert proxy.popen.wait(30) == 1
    output = proxy.output()
    assert "use_original_dst" in output
    assert "l4" in output


def test_port_in_use_stops_start_up() -> None:
    import socket as socket_module

    taken = socket_module.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    bootstrap = {"static_resources": {
        "listeners": [listener("busy", port, [{"filters": [tcp_proxy("backend")]}])],
        "clusters": [static_cluster("backend", [1])],
    }}
    try:
        for concurrency in ("1", "2"):
            proxy = Pointsman(bootstrap, extra_args=("--concurrency", concurrency))
            try:
                assert proxy.popen.wait(30) == 1
            finally:
                proxy.stop()
            assert "busy" in proxy.output() and "in use" in proxy.output()
    finally:
        taken.close()
