"""The benchmark scripts' load runs against a real `pointsman proxy` that answers 503: wrk,
h2load and the gRPC client must fail (LoadError) instead of reporting the 503s as throughput,
and still measure a proxy that answers 200."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bench.load_checks import LoadError
from tests.bench.proxy_http_bench import grpc_rps, h2load_rps, latencies, wrk_rps
from tests.support.bootstraps import HCM_TYPE, ROUTER
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.skipif(not (shutil.which("wrk") and shutil.which("h2load")),
                                reason="needs wrk and h2load (Debian: wrk, nghttp2-client)")


def _listener(name: str, port: int, status: int, codec: str) -> dict[str, Any]:
    reply = {"status": status, "body": {"inline_string": "x" * 10}}
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM_TYPE, "stat_prefix": name, "codec_type": codec,
                                 "http_filters": [ROUTER], "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": [{
                                         "match": {"prefix": "/"},
                                         "direct_response": reply}]}]}}}]}]}


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    """HTTP/1.1 and HTTP/2 listeners answering 503, and an HTTP/1.1 one answering 200."""
    ports = {"h1_503": free_port(), "h2_503": free_port(), "h1_200": free_port()}
    config = {"static_resources": {"listeners": [
        _listener("h1_503", ports["h1_503"], 503, "HTTP1"),
        _listener("h2_503", ports["h2_503"], 503, "HTTP2"),
        _listener("h1_200", ports["h1_200"], 200, "HTTP1")]}}
    with Pointsman(config, name="pointsman-503") as proxy:
        proxy.wait_ready()
        yield ports


def test_wrk_run_with_503s_fails(ports: dict[str, int]) -> None:
    with pytest.raises(LoadError, match=r"wrk: \d+ responses were not 2xx"):
        wrk_rps(ports["h1_503"], 1)
    assert wrk_rps(ports["h1_200"], 1) > 0


def test_wrk_run_that_cannot_connect_fails() -> None:
    with pytest.raises(LoadError, match="wrk exited with status 1"):
        wrk_rps(free_port(), 1)


def test_h2load_run_with_503s_fails(ports: dict[str, int]) -> None:
    with pytest.raises(LoadError, match=r"0 succeeded, 50 failed.*0 2xx, 0 3xx, 0 4xx, 50 5xx"):
        h2load_rps(ports["h2_503"], 1, 10, 50)
    with pytest.raises(LoadError, match="50 errored"):
        h2load_rps(free_port(), 1, 10, 50)


def test_grpc_run_with_failed_calls_fails(ports: dict[str, int]) -> None:
    with pytest.raises(LoadError, match=r"gRPC: .*call\(s\) failed after 0 succeeded: UNAVAILABLE"):
        grpc_rps(ports["h2_503"], 1, threads=2)


def test_latency_run_with_503s_fails(ports: dict[str, int]) -> None:
    with pytest.raises(LoadError, match="answered 503"):
        latencies(ports["h1_503"], 20, 1, connections=2)
    assert len(latencies(ports["h1_200"], 20, 2, connections=2)) >= 20
