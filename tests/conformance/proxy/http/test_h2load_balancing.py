"""Per-stream balancing through `pointsman proxy`: one h2load connection with 20 concurrent
streams, 600 requests, three h2c backends; and one grpcio channel over three gRPC servers."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import grpc
import pytest

from tests.support.grpc_backends import GrpcBackend
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
H2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def bootstrap(port: int, backend_ports: list[int], *, grpc_only: bool = False) -> dict[str, Any]:
    match: dict[str, Any] = {"prefix": "/", **({"grpc": {}} if grpc_only else {})}
    return {"static_resources": {
        "listeners": [{"name": "l7", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": HCM, "stat_prefix": "l7", "codec_type": "AUTO",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                                        "routes": [{"match": match, "route": {
                                                            "cluster": "backends"}}]}]},
                    "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router"
                                 ".v3.Router"}}]}}]}]}],
        "clusters": [{"name": "backends", "type": "STATIC", "connect_timeout": "1s",
                      "typed_extension_protocol_options": H2_OPTIONS,
                      "load_assignment": {"cluster_name": "backends", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": p}}}}
                              for p in backend_ports]}]}}]}}


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load (nghttp2-client) missing")
def test_h2load_one_connection_spreads_over_three_backends() -> None:
    backends = [EchoBackend(f"h{i}", http2=True).start() for i in range(3)]
    port = free_port()
    proxy = Pointsman(bootstrap(port, [b.port for b in backends]), name="pointsman-h2load")
    try:
        proxy.wait_ready()
        result = subprocess.run(
            ["h2load", "-c1", "-m20", "-n600", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=120, check=False)
        summary = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded",
                            result.stdout)
        assert summary, result.stdout + result.stderr
        assert summary.group(3) == "600", result.stdout
        counts = sorted(b.total for b in backends)
        assert sum(counts) == 600
        assert counts == [200, 200, 200], counts  # round robin per stream
    finally:
        proxy.stop()
        for backend in backends:
            backend.stop()


def test_one_grpc_channel_spreads_over_three_servers() -> None:
    servers = [GrpcBackend(f"g{i}").start() for i in range(3)]
    port = free_port()
    proxy = Pointsman(bootstrap(port, [s.port for s in servers], grpc_only=True),
                      name="pointsman-grpc")
    try:
        proxy.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary("/test.Echo/Unary")
            replies = [unary(b"x", timeout=10) for _ in range(60)]
            stream = channel.stream_stream("/test.Echo/Stream")
            echoed = list(stream(iter([b"1", b"2"]), timeout=10))
            with pytest.raises(grpc.RpcError) as failed:
                channel.unary_unary("/test.Echo/Fail")(b"x", timeout=10)
        assert {r.split(b":")[0] for r in replies} == {b"g0", b"g1", b"g2"}
        assert sorted(s.calls["Unary"] for s in servers) == [20, 20, 20]
        assert echoed == [b"1!", b"2!"]
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        proxy.stop()
        for server in servers:
            server.stop()
