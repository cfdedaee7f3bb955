"""What a request keeps for its retries (Envoy router.cc): the body as sent so far
(`BodyReplay`, replayed to each new attempt while it fits the retry buffer) and the cluster's
max_retries circuit breaker (`RetryBudget`, a slot held per retry in flight).

The replay is also the request body's pump: it reads the downstream body, keeps what a retry
would need, feeds the request's mirrors (proxy.http.shadow) and sends it to the attempt's
upstream stream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from proxy.http.body import BodyChannel, StreamResetError
from proxy.http.deadline import Deadline
from proxy.http.filter import HttpStream
from proxy.http.retry import RetryState
from proxy.http.shadow import Shadows
from proxy.model.circuit_breakers import Resource
from proxy.upstream.pools.base import UpstreamStream

log = logging.getLogger(__name__)


class RetryBudget:
    """The cluster's max_retries circuit breaker: a retry holds one slot from the decision to
    retry until that retry's attempt is over (Envoy counts retries in flight)."""

    __slots__ = ("breaker", "holding", "runtime")

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime  # the breaker is looked up only when a retry is considered
        self.holding = False
        self.breaker: Any = None

    def acquire(self) -> bool:
        self.release()  # the previous retry, if any, is over
        if self.breaker is None:
            if not hasattr(self.runtime, "circuit_breaker"):
                return True
            self.breaker = self.runtime.circuit_breaker()
        self.holding = self.breaker.try_acquire(Resource.RETRIES)
        return self.holding

    def release(self) -> None:
        if self.holding:
            self.breaker.release(Resource.RETRIES)
            self.holding = False


class BodyReplay:
    """The request body as sent so far, kept for a retry while the retry policy is on and the
    body fits the buffer limit (Envoy router.cc decodeData: past `retry_shadow_buffer_limit_`
    it counts `retry_or_shadow_abandoned` and gives up retrying this request)."""

    __slots__ = ("_runtime", "buffering", "channel", "chunks", "limit", "overflowed", "retries",
                 "route_timer", "shadows", "size")

    def __init__(self, channel: BodyChannel, retries: RetryState, limit: int,
                 runtime: Any = None, route_timer: Deadline | None = None) -> None:
        self.channel = channel
        self.route_timer = route_timer
        self.retries = retries
        self.limit = limit
        self._runtime = runtime  # its retry_or_shadow_abandoned counter, looked up on use
        self.chunks: list[bytes] = []
        self.size = 0
        self.buffering = retries.policy is not None
        self.overflowed = False
        self.shadows: Shadows | None = None  # mirrors fed each chunk read, once

    @property
    def replayable(self) -> bool:
        return not self.overflowed

    def _keep(self, data: bytes) -> None:
        if not self.buffering:
            return
        if self.size + len(data) > self.limit:
            self.buffering = False
            self.overflowed = True
            self.chunks.clear()
            self.retries.abandon()
            count(self._runtime, "retry_or_shadow_abandoned")
            return
        self.chunks.append(data)
        self.size += len(data)

    def _body_ended(self) -> None:
        """The route timeout starts at the end of the request (RouteAction.timeout)."""
        if self.route_timer is not None:
            self.route_timer.start()
        if self.shadows is not None:
            self.shadows.end(self.channel.trailers)

    def _took(self, data: bytes, stream: HttpStream) -> None:
        stream.touch()
        stream.bytes_received += len(data)
        self._keep(data)

    async def pump(self, upstream: UpstreamStream, stream: HttpStream) -> None:
        """Replay what was kept, then send the rest of the body as it arrives, and its end."""
        for chunk in self.chunks:
            await upstream.send_data(chunk, end_stream=False)
        while True:
            data = await self.channel.read()
            if data is None:
                self._body_ended()
                break
            self._took(data, stream)
            if self.shadows is not None:
                await self.shadows.feed(data)
            await upstream.send_data(data, end_stream=False)
        if self.channel.trailers is not None:
            await upstream.send_trailers(self.channel.trailers)
        else:
            await upstream.send_data(b"", end_stream=True)

    async def buffer_during(self, delay: float, stream: HttpStream) -> bool:
        """Wait out a retry back-off while still taking in the body (Envoy keeps decoding
        during the back-off); False when the body outgrew the buffer meanwhile."""
        try:
            async with asyncio.timeout(delay):
                while not self.overflowed:
                    data = await self.channel.read()
                    if data is None:
                        self._body_ended()
                        await asyncio.sleep(delay)  # body complete: just wait
                        break
                    self._took(data, stream)
                    if self.shadows is not None:
                        await self.shadows.feed(data)
        except TimeoutError:
            pass
        return not self.overflowed


def log_pump_failure(outcome: object) -> None:
    """The request body pump ends with the attempt. A reset downstream body or a closed
    connection is how an early end looks from there; anything else is a bug, and is logged
    rather than lost."""
    if isinstance(outcome, Exception) and not isinstance(outcome, StreamResetError | OSError):
        log.error("request body pump failed", exc_info=outcome)


def counter(runtime: Any, name: str) -> Any:
    """The cluster's counter `name` (None for runtimes without stats, as in unit tests)."""
    stats = getattr(runtime, "stats", None)
    return None if stats is None else stats.counter(getattr(runtime, "prefix", "") + name)


def count(runtime: Any, name: str) -> None:
    found = counter(runtime, name)
    if found is not None:
        found.inc()
