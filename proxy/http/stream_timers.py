"""The timers of one connection's streams behind a single loop timer.

Every stream has a route timeout and a stream idle timeout (HCM stream_idle_timeout, 5 min by
default) and almost every stream ends long before either. Arming and cancelling two loop
timers per request is the cost Envoy's timer wheel avoids; here the connection keeps one
TimerHandle, armed for the earliest deadline among its streams' timers. With equal timeouts
the streams' deadlines only grow, so a new stream's timer does not touch the loop at all, and
a finished stream just leaves the set. When the handle fires, the due timers fire and the
handle is armed again for the earliest one left. Deadlines keep their exact times: nothing is
rounded to a tick.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

_RESOLUTION = 0.001


class StreamTimer(Protocol):
    when: float  # the loop time it is due at

    def fire(self, now: float) -> None:
        """Due: act, or move `when` later and `StreamTimers.add` itself again."""


class StreamTimers:
    __slots__ = ("_armed_at", "_handle", "_loop", "_timers")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timers: dict[StreamTimer, None] = {}  # an insertion-ordered set
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def now(self) -> float:
        return self._loop.time()

    def add(self, timer: StreamTimer) -> None:
        self._timers[timer] = None
        if timer.when < self._armed_at:
            self._arm(timer.when)

    def discard(self, timer: StreamTimer) -> None:
        # The handle stays armed: when it fires with nothing due it re-arms or stops.
        self._timers.pop(timer, None)

    def __len__(self) -> int:
        return len(self._timers)

    def close(self) -> None:
        self._timers.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        now = self._loop.time()
        # Due within the loop's timer resolution (1 ms), as asyncio's own loop counts it: a
        # handle that fires a little early must not spin re-arming itself.
        due = [timer for timer in self._timers if timer.when <= now + _RESOLUTION]
        for timer in due:
            self._timers.pop(timer, None)
            timer.fire(now)  # may add itself again
        if self._timers:
            earliest = min(timer.when for timer in self._timers)
            if earliest < self._armed_at:
                self._arm(earliest)
