"""A deadline on a stream's task: asyncio.timeout's semantics at a fraction of its cost.

The route timeout bounds every forwarded request, so it is armed and disarmed once per request.
`asyncio.timeout` looks up the running loop and the current task on each use (each lookup a
getpid() system call in CPython 3.11), goes through two coroutines and arms a loop timer; this
holds the task it was given and waits in the connection's StreamTimers. The rules are
asyncio.timeout's: on expiry the task is cancelled; the cancellation is taken back, and becomes
"timed out", only when it was ours and no other cancellation of the task is pending
(Task.uncancel(), Python 3.11 asyncio docs).
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from proxy.http.stream_timers import StreamTimers


class Deadline:
    """Armed on creation; `timed_out()` on CancelledError, `disarm()` in `finally`.

        deadline = Deadline(timers, task, seconds)  # or started=False, then start()
        try:
            await work()
        except asyncio.CancelledError:
            if not deadline.timed_out():
                raise
            ...  # timed out
        finally:
            deadline.disarm()

    It is a StreamTimer of the connection's StreamTimers (no loop timer of its own).
    """

    __slots__ = ("_cancelling", "_expired", "_seconds", "_started", "_task", "_timers", "when")

    def __init__(self, timers: StreamTimers, task: asyncio.Task[Any], seconds: float, *,
                 started: bool = True) -> None:
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._seconds = seconds
        self._timers: StreamTimers | None = timers
        self._started = False
        self.when = math.inf
        if started:
            self.start()

    def start(self) -> None:
        """Start the clock (once; a deadline made with started=False waits for this)."""
        if self._started or self._timers is None:
            return
        self._started = True
        self.when = self._timers.now() + self._seconds
        self._timers.add(self)

    def fire(self, now: float) -> None:
        self._timers = None  # the timers let go of us
        self._expired = True
        self._task.cancel()

    def timed_out(self) -> bool:
        """Whether the CancelledError being handled is this deadline's: it expired and no
        other cancellation of the task is pending. Its cancellation is taken back either way."""
        if not self._expired:
            return False
        self._expired = False
        return self._task.uncancel() <= self._cancelling

    def disarm(self) -> None:
        if self._timers is not None:
            # Leaving the set also drops its reference to us: no cycle outlives the request.
            self._timers.discard(self)
            self._timers = None
        elif self._expired:  # expired as the work finished anyway: take the cancellation back
            self._expired = False
            self._task.uncancel()
