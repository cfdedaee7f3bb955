"""proxy.tasks: an exception in an owned task is reported when the task ends, to the log and to
its owner; it never reaches asyncio's "Task exception was never retrieved"."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from proxy.tasks import TaskSet, log_failure


async def boom() -> None:
    raise RuntimeError("boom")


async def test_a_failed_task_is_logged_and_handed_to_its_owner(
        caplog: pytest.LogCaptureFixture) -> None:
    failures: list[tuple[str, BaseException]] = []
    tasks = TaskSet("server", on_error=lambda name, error: failures.append((name, error)))
    task = tasks.spawn(boom(), "initialization")
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks
    assert [(name, str(error)) for name, error in failures] == [
        ("server: initialization", "boom")]
    assert len(tasks) == 0
    assert any(r.levelno == logging.ERROR and "server: initialization" in r.getMessage()
               for r in caplog.records)


async def test_nothing_reaches_never_retrieved(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskSet("server")
    tasks.spawn(boom(), "lost")
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    assert not any("never retrieved" in r.getMessage() for r in caplog.records)


async def test_cancelling_is_not_a_failure() -> None:
    failures: list[str] = []
    tasks = TaskSet("server", on_error=lambda name, error: failures.append(name))
    tasks.spawn(asyncio.Event().wait(), "waiting")
    await asyncio.sleep(0)
    await tasks.close()
    assert failures == [] and len(tasks) == 0


async def test_log_failure_reports_a_task_kept_elsewhere(
        caplog: pytest.LogCaptureFixture) -> None:
    task = asyncio.get_running_loop().create_task(boom(), name="health check c h:1")
    task.add_done_callback(log_failure)
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert any("health check c h:1" in r.getMessage() and r.exc_info
               for r in caplog.records)
