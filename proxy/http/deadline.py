"""A deadline on a stream's task: asyncio.timeout's semantics at a fraction of its cost.

The route timeout bounds every forwarded request, so it is armed and disarmed once per request.
`asyncio.timeout` looks up the running loop and the current task on each use (each lookup a
getpid() system call in CPython 3.11) and goes through two coroutines; this holds the loop and
the task it was given. The rules are asyncio.timeout's: on expiry the task is cancelled; the
cancellation is taken back, and becomes "timed out", only when it was ours and no other
cancellation of the task is pending (Task.uncancel(), Python 3.11 asyncio docs).
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadline:
    """Armed on creation; `timed_out()` on CancelledError, `disarm()` in `finally`.

        deadline = Deadline(loop, task, seconds)
        try:
            await work()
        except asyncio.CancelledError:
            if not deadline.timed_out():
                raise
            ...  # timed out
        finally:
            deadline.disarm()
    """

    __slots__ = ("_cancelling", "_expired", "_handle", "_task")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any],
                 seconds: float) -> None:
        self._task = task
        self._cancelling = task.cancelling()
        self._expired = False
        self._handle: asyncio.TimerHandle | None = loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        self._handle = None
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
        if self._handle is not None:
            # Dropping the handle also drops its reference to us: no cycle outlives the request.
            self._handle.cancel()
            self._handle = None
        elif self._expired:  # expired as the work finished anyway: take the cancellation back
            self._expired = False
            self._task.uncancel()
