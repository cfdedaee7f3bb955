"""StreamTimers (one loop timer for a connection's stream timers) and the route Deadline."""

from __future__ import annotations

import asyncio

import pytest

from proxy.http.deadline import Deadline
from proxy.http.stream_timers import StreamTimers


class _Timer:
    def __init__(self, when: float, fired: list[tuple[str, float]], name: str) -> None:
        self.when = when
        self.fired = fired
        self.name = name

    def fire(self, now: float) -> None:
        self.fired.append((self.name, now))


async def test_timers_fire_in_order_and_not_before_their_time() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    fired: list[tuple[str, float]] = []
    start = loop.time()
    for name, delay in (("b", 0.06), ("a", 0.02), ("c", 0.1)):
        timers.add(_Timer(start + delay, fired, name))
    await asyncio.sleep(0.2)
    assert [name for name, _ in fired] == ["a", "b", "c"]
    for (_, now), delay in zip(fired, (0.02, 0.06, 0.1), strict=True):
        assert now >= start + delay - 0.001  # the loop's timer resolution
    assert len(timers) == 0


async def test_a_discarded_timer_does_not_fire() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    fired: list[tuple[str, float]] = []
    early = _Timer(loop.time() + 0.02, fired, "early")
    timers.add(early)
    timers.add(_Timer(loop.time() + 0.04, fired, "late"))
    timers.discard(early)
    await asyncio.sleep(0.1)
    assert [name for name, _ in fired] == ["late"]


async def test_later_timers_reuse_the_armed_loop_timer() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    first = _Timer(loop.time() + 10, [], "first")
    timers.add(first)
    handle = timers._handle
    for index in range(100):  # equal timeouts started later: deadlines only grow
        timers.add(_Timer(loop.time() + 10 + index, [], str(index)))
    assert timers._handle is handle
    timers.add(_Timer(loop.time() + 1, [], "sooner"))  # an earlier one re-arms
    assert timers._handle is not handle
    timers.close()
    assert len(timers) == 0 and timers._handle is None


async def test_a_timer_can_move_itself_later_when_it_fires() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    fired: list[float] = []

    class Idle:
        def __init__(self) -> None:
            self.when = loop.time() + 0.02
            self.extended = False

        def fire(self, now: float) -> None:
            fired.append(now)
            if not self.extended:  # activity happened: due again later
                self.extended = True
                self.when = now + 0.03
                timers.add(self)

    timers.add(Idle())
    await asyncio.sleep(0.15)
    assert len(fired) == 2 and fired[1] - fired[0] >= 0.029


async def test_deadline_times_out_the_task_like_asyncio_timeout() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    task = asyncio.current_task()
    assert task is not None
    deadline = Deadline(timers, task, 0.02)
    timed_out = False
    try:
        await asyncio.sleep(1)
    except asyncio.CancelledError:
        timed_out = deadline.timed_out()
        if not timed_out:
            raise
    finally:
        deadline.disarm()
    assert timed_out and task.cancelling() == 0
    await asyncio.sleep(0)  # the task is usable again


async def test_deadline_disarmed_in_time_never_cancels() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    task = asyncio.current_task()
    assert task is not None
    deadline = Deadline(timers, task, 0.02)
    await asyncio.sleep(0)
    deadline.disarm()
    await asyncio.sleep(0.05)  # would raise CancelledError had it fired
    assert len(timers) == 0 and task.cancelling() == 0


async def test_another_cancellation_is_not_mistaken_for_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)

    async def work() -> None:
        task = asyncio.current_task()
        assert task is not None
        deadline = Deadline(timers, task, 10)
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            assert not deadline.timed_out()
            raise
        finally:
            deadline.disarm()

    task = asyncio.ensure_future(work())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(timers) == 0


async def test_a_deadline_made_unstarted_runs_only_from_start() -> None:
    loop = asyncio.get_running_loop()
    timers = StreamTimers(loop)
    task = asyncio.current_task()
    assert task is not None
    deadline = Deadline(timers, task, 0.02, started=False)
    await asyncio.sleep(0.05)  # not started: no timeout yet
    assert len(timers) == 0
    deadline.start()
    deadline.start()  # once
    with pytest.raises(asyncio.CancelledError):
        await asyncio.sleep(1)
    assert deadline.timed_out()
    deadline.disarm()
