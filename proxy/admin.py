"""The admin endpoint (Envoy doc: operations/admin), loopback by default.

GET /ready (200 LIVE / 503 PRE_INITIALIZING), /config_dump (JSON, versions per resource),
/clusters (Envoy's text lines, or `?format=json`), /stats (`name: value`, `?filter=REGEX`),
/stats/prometheus, /listeners. A deliberately small HTTP/1.1 server: one request per
connection, no keep-alive, bodies ignored.

`AdminSource` is what the pages read; the single-process server passes itself
(proxy.server.Server), proxy.workers passes an aggregate over worker processes.

The admin accepts on its own loop with a spare descriptor (proxy.descriptors): when the process
is out of file descriptors it gives the spare back for one admin connection at a time, so the
admin stays reachable at the limit. An address in use is an `AdminBindError` naming the setting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import urllib.parse
from typing import Any, Protocol

from proxy.descriptors import RESOURCE_ERRORS, SpareDescriptor
from proxy.observability import prometheus
from proxy.stats import Stats
from proxy.tasks import TaskSet

log = logging.getLogger(__name__)

_MAX_REQUEST_HEAD = 8192


class AdminSource(Protocol):
    @property
    def ready(self) -> bool: ...

    def config_dump(self) -> dict[str, Any]: ...

    def clusters_view(self) -> dict[str, Any]: ...

    def stats_store(self) -> Stats: ...

    def listener_addresses(self) -> dict[str, tuple[str, int]]: ...


def render_clusters_text(view: dict[str, Any]) -> str:
    """Envoy's /clusters text: `cluster::host:port::field::value` lines per host."""
    lines = []
    for cluster in view.get("cluster_statuses", []):
        name = cluster["name"]
        for host in cluster.get("host_statuses", []):
            socket_address = host["address"]["socket_address"]
            prefix = f"{name}::{socket_address['address']}:{socket_address['port_value']}::"
            lines += [
                f"{prefix}cx_active::{host.get('active_connections', 0)}",
                f"{prefix}cx_total::{host.get('stats', {}).get('cx_total', 0)}",
                f"{prefix}rq_active::{host.get('active_requests', 0)}",
                f"{prefix}rq_total::{host.get('stats', {}).get('rq_total', 0)}",
                f"{prefix}health_flags::{'|'.join(host.get('health_flags', ['healthy']))}",
                f"{prefix}weight::{host.get('weight', 1)}",
                f"{prefix}region::{host.get('locality', {}).get('region', '')}",
                f"{prefix}zone::{host.get('locality', {}).get('zone', '')}",
                f"{prefix}priority::{host.get('priority', 0)}",
            ]
    return "\n".join(lines) + ("\n" if lines else "")


def route(source: AdminSource, target: str) -> tuple[int, str, str]:
    """(status, content type, body) for one GET: pure, so it is unit-tested directly."""
    parsed = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    path = parsed.path
    text = "text/plain; charset=UTF-8"
    if path == "/ready":
        return (200, text, "LIVE\n") if source.ready else (503, text, "PRE_INITIALIZING\n")
    if path == "/config_dump":
        return 200, "application/json", json.dumps(source.config_dump(), indent=2)
    if path == "/clusters":
        view = source.clusters_view()
        if query.get("format") == "json":
            return 200, "application/json", json.dumps(view, indent=2)
        return 200, text, render_clusters_text(view)
    if path == "/stats":
        if query.get("format") == "json":
            return 200, "application/json", _stats_json(source.stats_store(), query.get("filter"))
        return 200, text, _filtered_stats(source.stats_store(), query.get("filter"))
    if path == "/stats/prometheus":
        # Envoy's names and tags, rendered by proxy.observability.prometheus.
        return 200, "text/plain; version=0.0.4", prometheus.render(source.stats_store())
    if path == "/listeners":
        lines = [f"{name}::{host}:{port}"
                 for name, (host, port) in sorted(source.listener_addresses().items())]
        return 200, text, "\n".join(lines) + "\n"
    return 404, text, "invalid path. admin commands are: /ready /config_dump /clusters " \
                      "/stats /stats/prometheus /listeners\n"


def _stats_json(stats: Stats, pattern: str | None) -> str:
    """Envoy's `/stats?format=json`: {"stats": [{"name": ..., "value": ...}, ...]}."""
    regex = _compile(pattern)
    values = {**{n: c.value for n, c in stats.counters.items()},
              **{n: g.value for n, g in stats.gauges.items()}}
    return json.dumps({"stats": [{"name": name, "value": value}
                                 for name, value in sorted(values.items())
                                 if regex is None or regex.search(name)]})


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return re.compile(re.escape(pattern))


def _filtered_stats(stats: Stats, pattern: str | None) -> str:
    body = stats.render_text()
    if not pattern:
        return body
    try:
        regex = re.compile(pattern)
    except re.error:
        return f"invalid regex {pattern!r}\n"
    return "".join(line + "\n" for line in body.splitlines()
                   if regex.search(line.partition(": ")[0]))


class AdminBindError(OSError):
    """The admin address cannot be listened on (`admin.address` of the bootstrap)."""

    def __init__(self, address: tuple[str, int], error: OSError) -> None:
        # socket.create_server's strerror repeats the address: the plain one names the cause.
        super().__init__(error.errno, os.strerror(error.errno) if error.errno else str(error))
        self.address = address

    def __str__(self) -> str:
        return f"admin.address {self.address[0]}:{self.address[1]}: cannot listen: {self.strerror}"


class AdminServer:
    def __init__(self, source: AdminSource, address: tuple[str, int]) -> None:
        self.source = source
        self.address = address
        self._sock: socket.socket | None = None
        self._spare = SpareDescriptor()
        self._spare_user: socket.socket | None = None  # the connection served with it
        self._spare_back = asyncio.Event()
        self._tasks = TaskSet("admin")

    def __repr__(self) -> str:
        return f"AdminServer({self.address}, connections={len(self._tasks) - 1})"

    async def start(self) -> None:
        host, port = self.address
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._sock = socket.create_server((host, port), family=family, backlog=128)
        except OSError as error:
            raise AdminBindError(self.address, error) from error
        self._sock.setblocking(False)
        bound_host, bound_port = self._sock.getsockname()[:2]
        self.address = (bound_host, bound_port)
        self._tasks.spawn(self._accept_loop(), "accept")

    async def close(self) -> None:
        await self._tasks.close()
        if self._sock is not None:
            self._sock.close()
        self._spare.close()

    async def _accept_loop(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                client = self._accept()
            except OSError as error:  # out of descriptors, and the spare is not here
                log.debug("admin accept: %s", error)
                await self._wait_for_spare()
                continue
            if client is None:
                await _readable(loop, self._sock)
                continue
            self._tasks.spawn(self._serve(client), "connection")

    def _accept(self) -> socket.socket | None:
        """One waiting connection (None: none is waiting). Out of descriptors, the spare is
        given back for it: one admin connection at a time, the others wait in the backlog."""
        assert self._sock is not None
        try:
            client, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as error:
            if error.errno not in RESOURCE_ERRORS:
                log.debug("admin accept: %s", error)
                return None
            if self._spare_user is not None or not self._spare.release():
                raise
            try:
                client, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):  # EMFILE comes before the backlog
                self._spare.restore()
                return None
            except OSError:
                self._spare.restore()
                raise
            self._spare_user = client
        client.setblocking(False)
        return client

    async def _wait_for_spare(self) -> None:
        if self._spare_user is not None:
            self._spare_back.clear()
            await self._spare_back.wait()
        else:  # the spare could not be taken back yet: descriptors are still short
            await asyncio.sleep(0.1)
            self._spare.restore()

    def _closed(self, client: socket.socket) -> None:
        """Close the connection; if it held the spare's slot, take the spare back in the same
        step, so nothing else (a data-plane accept) can take that descriptor in between."""
        client.close()
        if client is self._spare_user:
            self._spare_user = None
            self._spare.restore()
            self._spare_back.set()

    async def _serve(self, client: socket.socket) -> None:
        """One request, one answer, on the raw socket: no transport that would close the
        descriptor later than `_closed` runs."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(10):
                head = await _read_head(loop, client)
                response = await self._answer(head) if head is not None else b""
                if response:
                    await loop.sock_sendall(client, response)
        except (OSError, ValueError, TimeoutError) as error:
            log.debug("admin request failed: %s", error)
        finally:
            self._closed(client)

    async def _answer(self, head: bytes) -> bytes:
        method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        if method not in ("GET", "HEAD"):
            status, content_type, body = 405, "text/plain", "method not allowed\n"
        else:
            refresh = getattr(self.source, "refresh", None)
            if refresh is not None:  # proxy.workers: gather the workers' stats first
                await refresh()
            status, content_type, body = route(self.source, target)
        payload = body.encode()
        return (f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"content-type: {content_type}\r\ncontent-length: {len(payload)}\r\n"
                "connection: close\r\n\r\n".encode("latin-1")
                + (payload if method == "GET" else b""))


async def _read_head(loop: asyncio.AbstractEventLoop, client: socket.socket) -> bytes | None:
    """The request head (bodies are ignored); None if the client closed first or sent more
    than _MAX_REQUEST_HEAD without ending it."""
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > _MAX_REQUEST_HEAD:
            return None
        chunk = await loop.sock_recv(client, 4096)
        if not chunk:
            return None
        data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(sock.fileno(), _wake, ready)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
