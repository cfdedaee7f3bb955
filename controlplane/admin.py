"""Admin HTTP endpoint on plain asyncio: GET /status[?node=ID] (JSON), /metrics (Prometheus),
/ready.

HTTP/1.1 with `Connection: close`, one request per connection: enough for curl, Prometheus
and tests, with no web framework dependency.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from controlplane.observe import Observer

if TYPE_CHECKING:
    from controlplane.workers import WorkerPool

MAX_REQUEST_BYTES = 16384
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class AdminServer:
    """`workers`: with --workers N, /status and /metrics gather the worker processes'."""

    def __init__(self, observer: Observer, ready: Callable[[], bool],
                 workers: WorkerPool | None = None) -> None:
        self.observer = observer
        self.ready = ready
        self.workers = workers
        self.server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self.server = await asyncio.start_server(self._handle, host, port)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def route_gathered(self, path: str) -> tuple[int, str, str]:
        """`route`, with the workers' streams when there are worker processes."""
        if self.workers is None:
            return self.route(path)
        from controlplane.workers import merge_metrics, merge_status

        bare, _, query = path.partition("?")
        if bare == "/status":
            status = merge_status(self.observer.status(), await self.workers.ask("status"))
            return self._status(urllib.parse.parse_qs(query).get("node", []), status)
        if bare == "/metrics":
            texts = await self.workers.ask("metrics")
            return 200, PROMETHEUS_TEXT, merge_metrics([self.observer.metrics_text(), *texts])
        return self.route(path)

    def route(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) for a GET of `path`."""
        path, _, query = path.partition("?")
        if path == "/status":
            return self._status(urllib.parse.parse_qs(query).get("node", []))
        if path == "/metrics":
            return 200, PROMETHEUS_TEXT, self.observer.metrics_text()
        if path == "/ready":
            ready = self.ready()
            return (200 if ready else 503), "text/plain", "LIVE\n" if ready else "NOT READY\n"
        if path == "/":
            return 200, "text/plain", "/status\n/metrics\n/ready\n"
        return 404, "text/plain", "not found\n"

    def _status(self, wanted: list[str], status: dict[str, Any] | None = None
                ) -> tuple[int, str, str]:
        """/status, or with ?node=ID the streams of one node (by node id or node cluster):
        404 when no open stream is that node's."""
        status = self.observer.status() if status is None else status
        if wanted:
            status["nodes"] = [node for node in status["nodes"]
                               if node["id"] in wanted or node["cluster"] in wanted]
            if not status["nodes"]:
                body = {"error": f"no connected node has id or cluster {', '.join(wanted)}"}
                return 404, "application/json", json.dumps(body)
        return 200, "application/json", json.dumps(status, indent=1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            if len(head) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "GET":
                status, kind, body = 405, "text/plain", "only GET\n"
            else:
                status, kind, body = await self.route_gathered(path)
            payload = body.encode()
            writer.write(f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                         f"Content-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ValueError, ConnectionError):
            pass
        finally:
            writer.close()


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
