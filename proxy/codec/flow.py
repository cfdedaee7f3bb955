"""Write flow control, for both sides of the proxy: transport backpressure (`WriteFlow`,
asyncio's pause_writing/resume_writing) and sending DATA within the peer's HTTP/2 windows
(`send_flow_controlled`, RFC 9113 section 5.2: a sender may not exceed the window it was
given and waits for WINDOW_UPDATE). No sockets here: the caller passes its flush, its wait
for a window and its "gone" check."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from proxy.codec.http2 import Http2Codec


class WriteFlow:
    """Backpressure for transport writes: `await drained()` while the kernel buffer is full."""

    def __init__(self) -> None:
        # Writers check `paused` before awaiting drained(): no coroutine per write.
        self.paused = False
        self._waiters: list[asyncio.Future[None]] = []
        self.lost = False

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake()

    def connection_lost(self) -> None:
        self.lost = True
        self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def drained(self) -> None:
        while self.paused and not self.lost:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


async def send_flow_controlled(codec: Http2Codec, stream_id: int, data: bytes, end_stream: bool,
                               flush: Callable[[], None],
                               wait_window: Callable[[], Awaitable[None]],
                               gone: Callable[[], bool]) -> None:
    """Send DATA within the peer's windows, waiting for WINDOW_UPDATE when they are shut."""
    view = memoryview(data)
    while True:
        if gone():
            return
        allowed = codec.sendable(stream_id)
        if allowed < 0:
            return  # the stream is closed
        if allowed == 0 and view:
            await wait_window()
            continue
        chunk = view[:allowed]
        view = view[allowed:]
        last = end_stream and not view
        codec.send_data(stream_id, bytes(chunk), end_stream=last)
        flush()
        if not view:
            return
