"""Differential: which failures each `retry_on` condition retries (Envoy's
RetryStateImpl::wouldRetryFromReset), Envoy vs `pointsman proxy` with one bootstrap.

A refused connect is a reset before the request went out; a per-try timeout is a local reset
of an attempt whose request did go out. Per case: the status and how many retries and per-try
timeouts the cluster counted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H1Client
from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

CONDITIONS = ("reset", "reset-before-request", "connect-failure", "5xx", "gateway-error",
              "refused-stream", "retriable-4xx")
STATS = ("upstream_rq_retry", "upstream_rq_per_try_timeout")


async def _slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers after 1 s: past every per-try timeout below."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(1)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _bootstrap(port: int, slow_port: int, refused_port: int) -> dict[str, Any]:
    routes = []
    for condition in CONDITIONS:
        policy = {"retry_on": condition, "num_retries": 2, "per_try_timeout": "0.2s",
                  "retry_back_off": {"base_interval": "0.01s", "max_interval": "0.02s"}}
        for cluster in ("slow", "refused"):
            routes.append({"match": {"prefix": f"/{condition}/{cluster}"},
                           "route": {"cluster": cluster, "timeout": "5s",
                                     "retry_policy": policy}})
    return http_bootstrap(port, routes, [static_cluster("slow", [slow_port]),
                                         static_cluster("refused", [refused_port])],
                          stat_prefix="retry")


async def _stats(proxy: AdminProxy, cluster: str) -> dict[str, int]:
    return {name: await asyncio.to_thread(proxy.stat, f"cluster.{cluster}.{name}")
            for name in STATS}


async def _observe(proxy: AdminProxy, port: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for condition in CONDITIONS:
        for cluster in ("slow", "refused"):
            before = await _stats(proxy, cluster)
            async with asyncio.timeout(10), H1Client(port) as client:
                response = await client.request("GET", f"/{condition}/{cluster}")
            after = await _stats(proxy, cluster)
            seen[f"{condition} {cluster}"] = (response.status, {
                name: after[name] - before[name] for name in STATS})
    return seen


async def test_each_retry_condition_retries_what_envoy_retries() -> None:
    slow = await start_server(_slow)
    refused = free_port()
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(_bootstrap(envoy_port, port_of(slow), refused), name="envoy-retry-on")
    ours = Pointsman(_bootstrap(ours_port, port_of(slow), refused), name="pm-retry-on")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _observe(envoy, envoy_port)
        actual = await _observe(ours, ours_port)
    finally:
        envoy.stop()
        ours.stop()
        await stop_servers(slow)
    for case in expected:
        print(f"{case:32} envoy {expected[case]}  ours {actual[case]}")
    assert expected["reset slow"] == (504, {"upstream_rq_retry": 2,
                                            "upstream_rq_per_try_timeout": 3})
    assert expected["reset-before-request refused"][1]["upstream_rq_retry"] == 2
    assert expected["reset-before-request slow"][1]["upstream_rq_retry"] == 0
    assert actual == expected
