"""Tasks with an owner (trio's nurseries, asyncio.TaskGroup): nothing a task raises is lost.

A `TaskSet` keeps each task it spawned until it ends. A task that ends with an exception is
reported at once, from its done callback: logged with its traceback and handed to the owner's
`on_error` (the Server turns that into a fatal error and a non-zero exit). asyncio's own last
resort, "Task exception was never retrieved" at garbage collection, never sees it. Cancelling is
not an error. Unlike a TaskGroup a TaskSet does not cancel the others when one fails: the owner
decides what a failure means.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

log = logging.getLogger(__name__)

ErrorHandler = Callable[[str, BaseException], None]


def log_failure(task: asyncio.Task[Any]) -> None:
    """A done callback for a task kept elsewhere (a dict by host, say): an exception is
    logged with its traceback when the task ends, not lost."""
    if not task.cancelled() and task.exception() is not None:
        log.error("task %r failed", task.get_name(), exc_info=task.exception())


class TaskSet:
    def __init__(self, owner: str, on_error: ErrorHandler | None = None) -> None:
        self.owner = owner
        self.on_error = on_error
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"TaskSet({self.owner}, {sorted(task.get_name() for task in self._tasks)})"

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}: {name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so asyncio never reports it as lost
        if error is None:
            return
        log.error("task %r failed", task.get_name(), exc_info=error)
        if self.on_error is not None:
            self.on_error(task.get_name(), error)

    def cancel(self) -> list[asyncio.Task[Any]]:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        return tasks

    async def close(self) -> None:
        """Cancel every task and wait until they all ended."""
        tasks = self.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
