"""Differential: the cluster's code stats (upstream_rq_completed, upstream_rq_<code>,
upstream_rq_per_try_timeout, upstream_rq_timeout) when attempts time out or are reset,
retried or not, Envoy vs `pointsman proxy`.

Envoy charges the code of an answer once: a retried failure counts no code; the 504/503 the
router answers with (per-try timeout, reset, route timeout) counts once
(router.cc onPerTryTimeoutCommon, chargeUpstreamAbort, onResponseTimeout). The backend fails
the first request on each path (`slow`: answers after 1.5 s, past the 0.5 s timeouts; `reset`:
closes the connection) and answers 200 afterwards.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.proxy.http.clients import H1Client
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
STATS = ("upstream_rq_completed", "upstream_rq_200", "upstream_rq_503", "upstream_rq_504",
         "upstream_rq_5xx", "upstream_rq_retry", "upstream_rq_per_try_timeout",
         "upstream_rq_timeout", "upstream_rq_active")
# path prefix -> what the route does; each is requested with /slow and /reset
ROUTES = {
    "retried": {"retry_policy": {"retry_on": "reset,5xx", "num_retries": 1,
                                 "per_try_timeout": "0.5s",
                                 "retry_back_off": {"base_interval": "0.01s",
                                                    "max_interval": "0.02s"}}},
    "single": {"retry_policy": {"retry_on": "reset,5xx", "num_retries": 0,
                                "per_try_timeout": "0.5s"}},
    "route_timeout": {"timeout": "0.5s"},
}


class FailFirstBackend:
    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await start_server(self._serve)
        return port_of(self.server)

    async def close(self) -> None:
        assert self.server is not None
        await stop_servers(self.server)
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ")[1].decode()
            first = path not in self.seen
            self.seen[path] = self.seen.get(path, 0) + 1
            if first and path.endswith("/reset"):
                writer.transport.abort()
                return
            if first and path.endswith("/slow"):
                await asyncio.sleep(1.5)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()


def _bootstrap(port: int, backend_port: int) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/{name}/"}, "route": {"cluster": "backend", **extra}}
              for name, extra in ROUTES.items()]
    return {"static_resources": {
        "listeners": [{"name": "codes", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": "codes", "http_filters": [ROUTER],
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": routes}]}}}]}]}],
        "clusters": [{"name": "backend", "type": "STATIC", "connect_timeout": "2s",
                      "load_assignment": {"cluster_name": "backend", "endpoints": [{
                          "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                              "address": "127.0.0.1", "port_value": backend_port}}}}]}]}}]}}


async def _stats(proxy: AdminProxy) -> dict[str, int]:
    return {name: await asyncio.to_thread(proxy.stat, f"cluster.backend.{name}")
            for name in STATS}


async def _run(proxy: AdminProxy, port: int, tag: str) -> dict[str, Any]:
    """Per request: the status and the change of every stat it caused."""
    results: dict[str, Any] = {}
    before = await _stats(proxy)
    for name in ROUTES:
        for kind in ("slow", "reset"):
            async with asyncio.timeout(10), H1Client(port) as client:
                response = await client.request("GET", f"/{name}/{tag}/{kind}")
            await asyncio.sleep(0.05)  # let the attempt's bookkeeping finish
            after = await _stats(proxy)
            results[f"{name}/{kind}"] = (response.status, {
                stat: after[stat] - before[stat] for stat in STATS
                if after[stat] != before[stat]})
            before = after
    return results


async def test_code_stats_of_failed_attempts_like_envoy() -> None:
    backend = FailFirstBackend()
    backend_port = await backend.start()
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(_bootstrap(envoy_port, backend_port), name="envoy-codes")
    ours = Pointsman(_bootstrap(ours_port, backend_port), name="pm-codes")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _run(envoy, envoy_port, "envoy")
        actual = await _run(ours, ours_port, "ours")
    finally:
        envoy.stop()
        ours.stop()
        await backend.close()
    print("envoy:", expected)
    print("ours: ", actual)
    # retried: only the final 200 is charged
    assert expected["retried/slow"] == (200, {
        "upstream_rq_completed": 1, "upstream_rq_200": 1, "upstream_rq_retry": 1,
        "upstream_rq_per_try_timeout": 1})
    assert expected["single/slow"][0] == 504
    assert expected["route_timeout/slow"][1]["upstream_rq_timeout"] == 1
    assert actual == expected
