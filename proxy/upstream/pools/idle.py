"""The pools' idle timeout: Envoy's `common_http_protocol_options.idle_timeout` (default 1 h)
closes an upstream connection that has had no active request for that long.

One loop timer per pool, armed lazily: a connection going idle only makes sure a sweep is
due no later than its own deadline (nothing happens when one already is), and the sweep
closes every connection idle since before the cut-off and re-arms for the next deadline. A
busy pool so touches the loop about once per timeout, not once per request. Clock:
time.monotonic(), which the loop's timers also follow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class IdleTimer:
    def __init__(self, timeout: float | None,
                 sweep: Callable[[float], float | None]) -> None:
        """`sweep(cutoff)` closes the connections idle since `cutoff` or earlier and returns
        the earliest idle_since among those left idle (None: none)."""
        self.timeout = timeout
        self._sweep = sweep
        self._handle: asyncio.TimerHandle | None = None

    def went_idle(self, idle_since: float) -> None:
        """A connection has had no request since `idle_since` (time.monotonic())."""
        if self.timeout is None or self._handle is not None:
            return
        self._arm(idle_since)

    def _arm(self, idle_since: float) -> None:
        assert self.timeout is not None
        delay = max(0.0, idle_since + self.timeout - time.monotonic())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        assert self.timeout is not None
        earliest = self._sweep(time.monotonic() - self.timeout)
        if earliest is not None:
            self._arm(earliest)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
