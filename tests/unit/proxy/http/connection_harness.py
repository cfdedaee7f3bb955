"""A downstream connection over a recording transport, for the unit tests of the connections'
and streams' state machines (proxy.http.http1_server, http2_server, active_stream): no
sockets, the loop's own time. A router stand-in answers each request when the test says so."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.codec.flow import WriteFlow
from proxy.codec.headers import Headers, ResponseHead
from proxy.http.filter import FilterMaker
from proxy.http.manager import ConnectionInfo, HttpManager
from proxy.http.settings import HcmSettings
from proxy.stats import Stats


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    abort = close

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


class GatedRouter:
    """Answers 200 with the request's path as the body once `gate(path)` is set; records the
    paths it was asked for and those whose handling was cancelled."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.cancelled: list[str] = []

    def gate(self, path: str) -> asyncio.Event:
        return self.gates.setdefault(path, asyncio.Event())

    async def handle(self, stream: Any, config: Any, downstream: Any) -> None:
        self.started.append(stream.request.path)
        try:
            await self.gate(stream.request.path).wait()
        except asyncio.CancelledError:
            self.cancelled.append(stream.request.path)
            raise
        head = ResponseHead(200, Headers([("content-length", str(len(stream.request.path)))]))
        await downstream.send_response(head, end_stream=False)
        await downstream.send_data(stream.request.path.encode(), end_stream=True)


def new_connection(kind: Any, filters: list[FilterMaker] | None = None, **settings: Any
               ) -> tuple[Any, Transport, GatedRouter, Stats]:
    loop = asyncio.get_running_loop()
    router, stats, transport = GatedRouter(), Stats(), Transport()
    manager = HttpManager(HcmSettings(stat_prefix="t", delayed_close_timeout=0, **settings),
                          lambda: None, filters or [], router,  # type: ignore[arg-type]
                          stats=stats)
    info = ConnectionInfo(("10.0.0.1", 5000), ("10.0.0.2", 80), 1)
    return kind(manager, info, transport, loop, WriteFlow()), transport, router, stats


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def counter(stats: Stats, name: str) -> int:
    return stats.counter(f"http.t.{name}").value
