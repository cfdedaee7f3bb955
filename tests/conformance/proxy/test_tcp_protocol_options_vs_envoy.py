"""Differential: a cluster's TcpProtocolOptions.idle_timeout under tcp_proxy, Envoy vs ours.

TcpProtocolOptions.idle_timeout closes an upstream connection "not associated with a
downstream connection" (tcp_protocol_options.proto). Under tcp_proxy every upstream connection
belongs to one downstream connection for its whole life, so a quiet session outlives it; it is
not tcp_proxy's own idle_timeout. Measured on Envoy 1.40 with a 1 s idle_timeout: a session
quiet for 2.5 s still echoes, and no upstream connection was closed meanwhile.
"""

from __future__ import annotations

import socket
import time

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

TCP_OPTIONS = "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"


def test_tcp_protocol_idle_timeout_leaves_a_quiet_session_open_like_envoy() -> None:
    backend = TaggedServer("a")
    seen = {}
    try:
        for kind in ("envoy", "pointsman"):
            port = free_port()
            options = {TCP_OPTIONS: {"@type": f"type.googleapis.com/{TCP_OPTIONS}",
                                     "idle_timeout": "1s"}}
            bootstrap = {"static_resources": {
                "listeners": [listener("l4", port, [{"filters": [tcp_proxy("backend")]}])],
                "clusters": [static_cluster("backend", [backend.port],
                                            typed_extension_protocol_options=options)]}}
            proxy = Envoy(bootstrap) if kind == "envoy" else Pointsman(bootstrap)
            with proxy:
                proxy.wait_ready()
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    assert read_line(sock) == "a"
                    time.sleep(2.5)
                    sock.sendall(b"still here")
                    echoed = sock.recv(64)
                    destroyed = proxy.stat("cluster.backend.upstream_cx_destroy")
                seen[kind] = (echoed, destroyed)
    finally:
        backend.stop()
    assert seen["envoy"] == (b"still here", 0)
    assert seen["pointsman"] == seen["envoy"]
