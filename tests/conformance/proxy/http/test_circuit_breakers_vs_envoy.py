"""Differential: HTTP circuit breakers in the upstream pools, Envoy vs `pointsman proxy`.

One bootstrap, one cluster per scenario, each in front of a backend that holds every request
until the test releases it, so the order of events is fixed without sleeping:

- max_connections 1 + max_pending_requests 1 (HTTP/1.1): the first request takes the only
  connection, the second waits as pending (upstream_cx_overflow), the third overflows at once
  (503 UO, x-envoy-overloaded, upstream_rq_pending_overflow); once released, the first two
  succeed on the one connection.
- max_requests 1 (HTTP/1.1): the second request gets a new connection but overflows when it is
  put on it (Envoy 1.40 counts upstream_rq_active_overflow); the next request reuses it.
- max_requests 1 (HTTP/2 upstream): the second request overflows on the ready connection.

Compared: statuses, x-envoy-overloaded, response flags from the access log, and the
cluster's overflow / connection stats.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import pytest

from tests.integration.proxy.http.clients import H1Client, Response
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy
from tests.support.tcp_servers import port_of, start_server, stop_servers

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
       ".HttpConnectionManager")
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
H2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}
THRESHOLDS = {"pending": {"max_connections": 1, "max_pending_requests": 1},
              "requests": {"max_requests": 1}, "h2requests": {"max_requests": 1},
              "h2pending": {"max_connections": 1, "max_pending_requests": 1}}
STATS = ("upstream_rq_pending_overflow", "upstream_rq_active_overflow", "upstream_cx_overflow",
         "upstream_cx_total", "upstream_rq_total", "upstream_rq_pending_total",
         "upstream_rq_503", "upstream_rq_5xx", "upstream_rq_200", "upstream_rq_completed")


class HoldingBackend:
    """Answers 200 "ok" to every request, but only once `release()` was called; counts the
    requests it holds. HTTP/1.1 (keep-alive) or h2c."""

    def __init__(self, *, http2: bool = False, max_streams: int | None = None) -> None:
        self.http2 = http2
        self.max_streams = max_streams  # h2c SETTINGS_MAX_CONCURRENT_STREAMS
        self.held = 0
        self.released = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return port_of(self.server)

    async def start(self) -> None:
        handler = self._serve_h2 if self.http2 else self._serve_h1
        self.server = await start_server(handler)

    def reset(self) -> None:
        self.held = 0
        self.released = asyncio.Event()

    async def close(self) -> None:
        """Stop listening and drop every connection (the handlers see EOF and return)."""
        assert self.server is not None
        await stop_servers(self.server)
        self.released.set()
        for writer in list(self.writers):
            writer.transport.abort()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.sleep(0.01)  # let the handlers see their connections end

    async def _serve_h1(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")  # GETs only: no body
                if not head:
                    return
                self.held += 1
                await self.released.wait()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    async def _serve_h2(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        connection.initiate_connection()
        if self.max_streams is not None:
            connection.update_settings(
                {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})
        writer.write(connection.data_to_send())
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                for event in connection.receive_data(data):
                    if isinstance(event, h2.events.StreamEnded):
                        self._spawn(self._answer_h2(connection, writer, event.stream_id))
                writer.write(connection.data_to_send())
        except ConnectionError:
            return
        finally:
            self.writers.discard(writer)
            writer.close()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer_h2(self, connection: h2.connection.H2Connection,
                         writer: asyncio.StreamWriter, stream_id: int) -> None:
        self.held += 1
        await self.released.wait()
        if writer.is_closing():
            return
        try:
            connection.send_headers(stream_id, [(":status", "200"), ("content-length", "2")])
            connection.send_data(stream_id, b"ok", end_stream=True)
        except h2.exceptions.StreamClosedError:
            return  # the proxy gave up on it
        writer.write(connection.data_to_send())


def _cluster(name: str, port: int, thresholds: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s",
            "circuit_breakers": {"thresholds": [thresholds]},
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": port}}}}]}]}, **extra}


def _bootstrap(port: int, log_path: Path, backends: dict[str, HoldingBackend]
               ) -> dict[str, Any]:
    routes = [{"match": {"prefix": f"/{name}"}, "route": {"cluster": name}}
              for name in backends]
    log = {"name": "flags", "typed_config": {"@type": FILE_LOG, "path": str(log_path),
           "log_format": {"text_format": "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"}}}
    return {"static_resources": {
        "listeners": [{"name": "l7", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"@type": HCM, "stat_prefix": "l7", "http_filters": [ROUTER],
                                 "access_log": [log],
                                 "route_config": {"virtual_hosts": [{
                                     "name": "all", "domains": ["*"], "routes": routes}]}}}]}]}],
        "clusters": [_cluster(name, backend.port, THRESHOLDS[name],
                              **({"typed_extension_protocol_options": H2_OPTIONS}
                                 if backend.http2 else {}))
                     for name, backend in backends.items()]}}


async def _until(check: Callable[[], Any]) -> None:
    """Poll `check` (admin stats, counters) in a thread until it holds; 20 s at most."""
    async with asyncio.timeout(20):
        while not await asyncio.to_thread(check):  # noqa: ASYNC110 (another process's state)
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def _clients(port: int, count: int) -> AsyncIterator[list[H1Client]]:
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(H1Client(port)) for _ in range(count)]


def _summary(response: Response) -> tuple[int, str | None, bytes]:
    return response.status, response.header("x-envoy-overloaded"), response.body


async def _scenario_pending(port: int, proxy: AdminProxy, backend: HoldingBackend,
                            name: str) -> list[Any]:
    """max_connections 1, max_pending_requests 1: in flight, pending, overflow."""
    backend.reset()
    async with _clients(port, 3) as (first, second, third):
        held = asyncio.ensure_future(first.request("GET", f"/{name}/1"))
        await _until(lambda: backend.held == 1)
        queued = asyncio.ensure_future(second.request("GET", f"/{name}/2"))
        await _until(lambda: proxy.stat(f"cluster.{name}.upstream_rq_pending_active") == 1)
        refused = await third.request("GET", f"/{name}/3")
        backend.released.set()
        answers = [await held, await queued, refused]
    return [_summary(answer) for answer in answers]


async def _scenario_requests(port: int, proxy: AdminProxy, backend: HoldingBackend,
                             prefix: str) -> list[Any]:
    """max_requests 1: the second concurrent request overflows; later ones go through."""
    backend.reset()
    async with _clients(port, 3) as (first, second, third):
        held = asyncio.ensure_future(first.request("GET", f"{prefix}/1"))
        await _until(lambda: backend.held == 1)
        refused = await second.request("GET", f"{prefix}/2")
        backend.released.set()
        answers = [await held, refused, await third.request("GET", f"{prefix}/3")]
    return [_summary(answer) for answer in answers]


def _stats(proxy: AdminProxy, clusters: list[str]) -> dict[str, int]:
    return {f"{cluster}.{name}": proxy.stat(f"cluster.{cluster}.{name}")
            for cluster in clusters for name in STATS}


async def _log_lines(path: Path, count: int) -> list[str]:
    """The access log once it has `count` lines (Envoy flushes it every second)."""
    def lines() -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    await _until(lambda: len(lines()) >= count)
    return sorted(await asyncio.to_thread(lines))


async def _run(port: int, proxy: AdminProxy, backends: dict[str, HoldingBackend]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, backend in backends.items():
        if name in ("pending", "h2pending"):
            results[name] = await _scenario_pending(port, proxy, backend, name)
        else:
            results[name] = await _scenario_requests(port, proxy, backend, f"/{name}")
    results["stats"] = await asyncio.to_thread(_stats, proxy, list(backends))
    return results


async def _envoy_vs_ours(backends: dict[str, HoldingBackend]
                         ) -> tuple[dict[str, Any], dict[str, Any]]:
    for backend in backends.values():
        await backend.start()
    directory = Path(tempfile.mkdtemp(prefix="breakers-"))
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(_bootstrap(envoy_port, directory / "envoy.log", backends), name="envoy-cb")
    ours = Pointsman(_bootstrap(ours_port, directory / "ours.log", backends), name="pm-cb")
    try:
        await asyncio.to_thread(envoy.wait_ready)
        await asyncio.to_thread(ours.wait_ready)
        expected = await _run(envoy_port, envoy, backends)
        actual = await _run(ours_port, ours, backends)
    finally:
        envoy.stop()  # both flush their access logs as they stop (Envoy's file flush
        ours.stop()   # interval would otherwise make us wait ~10 s)
        for backend in backends.values():
            await backend.close()
    expected["log"] = await _log_lines(directory / "envoy.log", 3 * len(backends))
    actual["log"] = await _log_lines(directory / "ours.log", 3 * len(backends))
    return expected, actual


OVERFLOW = (503, "true", b"upstream connect error or disconnect/reset before headers. "
            b"reset reason: overflow")


async def test_http1_pool_breakers_match_envoy() -> None:
    expected, actual = await _envoy_vs_ours({"pending": HoldingBackend(),
                                             "requests": HoldingBackend()})
    assert expected["pending"] == [(200, None, b"ok"), (200, None, b"ok"), OVERFLOW]
    assert expected["requests"] == [(200, None, b"ok"), OVERFLOW, (200, None, b"ok")]
    assert expected["log"] == ["/pending/1 200 -", "/pending/2 200 -", "/pending/3 503 UO",
                               "/requests/1 200 -", "/requests/2 503 UO", "/requests/3 200 -"]
    assert actual["stats"] == expected["stats"]
    assert actual == expected


async def test_http2_pool_max_requests_matches_envoy() -> None:
    expected, actual = await _envoy_vs_ours({"h2requests": HoldingBackend(http2=True)})
    assert expected["h2requests"] == [(200, None, b"ok"), OVERFLOW, (200, None, b"ok")]
    assert actual == expected


async def test_http2_pool_max_connections_and_pending_match_envoy() -> None:
    """The upstream allows one stream per connection (SETTINGS): the second request waits for
    it as pending, since max_connections forbids a second connection; the third overflows."""
    expected, actual = await _envoy_vs_ours({"h2pending": HoldingBackend(http2=True,
                                                                        max_streams=1)})
    assert expected["h2pending"] == [(200, None, b"ok"), (200, None, b"ok"), OVERFLOW]
    assert actual == expected
