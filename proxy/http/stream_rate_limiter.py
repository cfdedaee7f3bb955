"""A response body let out at N KiB/s, as Envoy's StreamRateLimiter (the fault filter's
`response_rate_limit`; source/extensions/filters/http/common/stream_rate_limiter.cc).

Envoy's limiter keeps a token bucket of N * 1024 bytes that refills at N * 1024 bytes a second
(TokenBucketImpl, partial consumption) and starts with one fill interval's worth (50 ms). Data
is buffered; a timer takes as many tokens as there are buffered bytes, writes that much, and
comes back every fill interval while bytes remain. `RateLimiter` is that arithmetic with the
time passed in; `paced()` is the asyncio side, yielding the pieces as the timer would.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable

FILL_INTERVAL = 0.05  # seconds (Envoy's default fill_interval, 50 ms)


class TokenBucket:
    """Envoy's TokenBucketImpl: refills at `fill_rate` tokens a second up to `max_tokens`,
    computed when consumed."""

    __slots__ = ("fill_rate", "last_fill", "max_tokens", "tokens")

    def __init__(self, max_tokens: int, fill_rate: float, now: float) -> None:
        self.max_tokens = float(max_tokens)
        self.fill_rate = fill_rate
        self.tokens = float(max_tokens)
        self.last_fill = now

    def reset(self, tokens: int, now: float) -> None:
        self.tokens = float(tokens)
        self.last_fill = now

    def consume(self, wanted: int, now: float) -> int:
        """Take up to `wanted` whole tokens (allow_partial): how many were taken."""
        if self.tokens < self.max_tokens:
            self.tokens = min(self.tokens + (now - self.last_fill) * self.fill_rate,
                              self.max_tokens)
            self.last_fill = now
        taken = min(wanted, math.floor(self.tokens))
        self.tokens -= taken
        return taken


class RateLimiter:
    """How many of the buffered bytes may go out at `now`."""

    __slots__ = ("bucket",)

    def __init__(self, kbps: int, now: float) -> None:
        max_tokens = kbps * 1024
        self.bucket = TokenBucket(max_tokens, max_tokens, now)
        self.bucket.reset(max_tokens * int(FILL_INTERVAL * 1000) // 1000, now)

    def take(self, buffered: int, now: float) -> int:
        return self.bucket.consume(buffered, now)


async def paced(limiter: RateLimiter, data: bytes, end_stream: bool,
                clock: Callable[[], float]) -> AsyncIterator[tuple[bytes, bool]]:
    """`data` in the pieces the limiter lets out, one per fill interval; the last carries
    `end_stream`. A piece of no bytes is not written (unless it ends the stream)."""
    while True:
        size = limiter.take(len(data), clock())
        piece, data = data[:size], data[size:]
        if piece or not data:
            yield piece, end_stream and not data
        if not data:
            return
        await asyncio.sleep(FILL_INTERVAL)
