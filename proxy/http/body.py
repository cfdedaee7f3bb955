"""A bounded, awaitable body pipe between a codec adapter (producer) and a consumer.

The producer pushes chunks as they arrive; when more than `high_watermark` bytes wait, it is
told to stop reading (`on_pressure(True)`) and told to resume once the consumer drained below
half of it (Envoy's watermark buffers, `per_connection_buffer_limit_bytes`). For HTTP/2 each
chunk also carries the flow-controlled length to acknowledge once consumed, so the peer's
window only reopens as fast as we forward.

`transform`, when set, is applied to each chunk as the consumer reads it, with `end_stream`
when nothing follows (Envoy's decodeData(data, end_stream)): the HTTP filters'
`on_request_data` (proxy.http.active_stream). A body whose end arrives after its last chunk
was read gets one more call with no data and end_stream; what it returns is read last.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from proxy.codec.headers import Headers


class StreamResetError(Exception):
    """The stream was reset (by the peer, a timeout or the other side of the proxy)."""


class BodyChannel:
    def __init__(self, *, high_watermark: int = 1024 * 1024,
                 on_pressure: Callable[[bool], None] | None = None,
                 on_consumed: Callable[[int], None] | None = None) -> None:
        self.high_watermark = high_watermark
        self._on_pressure = on_pressure
        self._on_consumed = on_consumed
        self._chunks: deque[tuple[bytes, int]] = deque()
        self._buffered = 0
        self._pressured = False
        self.ended = False
        self.reset = False
        self.trailers: Headers | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.transform: Callable[[bytes, bool], bytes] | None = None
        self._transformed_end = False  # the transform was told end_stream, or need not be
        self._pushed = False  # a body without data (headers only) is never transformed

    # --- producer ------------------------------------------------------------------------------

    def push(self, data: bytes, flow_controlled: int = 0) -> None:
        if self.ended or self.reset:
            if self._on_consumed and flow_controlled:
                self._on_consumed(flow_controlled)  # dropped, but its window comes back
            return
        self._chunks.append((data, flow_controlled))
        self._buffered += len(data)
        self._pushed = True
        if not self._pressured and self._buffered > self.high_watermark:
            self._pressured = True
            if self._on_pressure:
                self._on_pressure(True)
        self._wake()

    def end(self, trailers: Headers | None = None) -> None:
        self.trailers = trailers
        self.ended = True
        self._wake()

    def abort(self) -> None:
        self.reset = True
        self._wake()

    def discard(self) -> None:
        """The stream is over: drop what was never read, giving back its flow-control credit
        (HTTP/2: the connection window is shared by every stream, RFC 9113 6.9.1)."""
        self.reset = True
        chunks, self._chunks = self._chunks, deque()
        self._buffered = 0
        if self._on_consumed:
            credit = sum(flow_controlled for _, flow_controlled in chunks)
            if credit:
                self._on_consumed(credit)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- consumer ------------------------------------------------------------------------------

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end of the body; raises StreamResetError."""
        while not self._chunks:
            if self.reset:
                raise StreamResetError("stream reset")
            if self.ended:
                return self._transform_end()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data, flow_controlled = self._chunks.popleft()
        self._buffered -= len(data)
        if self._on_consumed and flow_controlled:
            self._on_consumed(flow_controlled)
        if self._pressured and self._buffered <= self.high_watermark // 2:
            self._pressured = False
            if self._on_pressure:
                self._on_pressure(False)
        return data if self.transform is None else self._transformed(data)

    def read_nowait(self) -> bytes | None:
        """The next chunk already queued, else None (whether or not the body ended)."""
        if not self._chunks:
            return self._transform_end() if self.ended and not self.reset else None
        data, flow_controlled = self._chunks.popleft()
        self._buffered -= len(data)
        if self._on_consumed and flow_controlled:
            self._on_consumed(flow_controlled)
        return data if self.transform is None else self._transformed(data)

    def _transformed(self, data: bytes) -> bytes:
        assert self.transform is not None
        end = self.ended and not self._chunks and self.trailers is None
        self._transformed_end = end
        return self.transform(data, end)

    def _transform_end(self) -> bytes | None:
        """At the end: the transform's last call when no chunk carried end_stream."""
        if not self._end_pending():
            return None
        assert self.transform is not None
        self._transformed_end = True
        return self.transform(b"", True) or None

    def _end_pending(self) -> bool:
        return self.transform is not None and self._pushed and not self._transformed_end \
            and self.trailers is None

    @property
    def exhausted(self) -> bool:
        """Ended and fully read (the transform told of the end, when there is one)."""
        return self.ended and not self._chunks and not (
            self.transform is not None and self._end_pending())
