"""The HCM ends a span without a request record (ActiveStream.finish_span): the request shape
it hands over must be the one span_encoder.request_shape reads from the record."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from proxy.codec.headers import Headers, RequestHead
from proxy.http.active_stream import ActiveStream
from proxy.http.manager import ConnectionInfo
from proxy.http.stream_timers import StreamTimers
from proxy.observability.tracing.span_encoder import request_shape


class _Span:
    def __init__(self) -> None:
        self.finished: list[tuple[Any, ...]] = []

    def finish_shaped(self, shape: tuple[object, ...], duration: float, record: Any) -> None:
        self.finished.append((shape, duration, record))


async def test_the_stream_shape_is_the_record_shape() -> None:
    loop = asyncio.get_running_loop()
    manager = SimpleNamespace(settings=SimpleNamespace(stream_idle_timeout=None),
                              filter_makers=[])
    facts = ConnectionInfo(("10.0.0.1", 4242), ("127.0.0.1", 80), 7, buffer_limit=1024)
    owner = SimpleNamespace(manager=manager, info=facts, body_pressure=lambda *_: None,
                            body_consumed=lambda *_: None, loop=loop, timers=StreamTimers(loop))
    head = RequestHead("POST", "/a?b=1", "svc.test", "https", Headers(), "HTTP/2")
    stream = ActiveStream(owner, 1, head)  # type: ignore[arg-type]
    info = stream.info
    info.response_code = 503
    info.response_flags.extend(["URX", "UF"])  # Envoy 1.40 prints them in the order set
    info.route = SimpleNamespace(name="r1")  # type: ignore[assignment]
    info.upstream_cluster, info.upstream_host = "backend", "10.0.0.9:8080"
    info.bytes_received, info.bytes_sent = 12, 34
    span = _Span()
    stream.finish_span(span)
    [(shape, duration, record)] = span.finished
    assert shape == request_shape(record())
    assert shape[5] == ("URX", "UF") and duration >= 0
