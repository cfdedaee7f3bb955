"""The asyncio side of pacing (controlplane/protocol/pacing.py): one per server process.

- `changed(wake)`: the cache woke a stream (its view changed). The wake is held until the
  burst of changes is over (`Debounce`), then every held stream is woken once.
- `await acquire(size)` / `release(size)`: a stream's response bytes in flight (`Budget`),
  around encoding and writing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from controlplane.logs import now
from controlplane.protocol.pacing import Budget, Debounce

DEFAULT_BUDGET = 64 * 1024 * 1024
DEFAULT_DEBOUNCE_AFTER = 0.05
DEFAULT_DEBOUNCE_MAX = 1.0


class Pacer:
    def __init__(self, *, budget: int = DEFAULT_BUDGET,
                 debounce_after: float = DEFAULT_DEBOUNCE_AFTER,
                 debounce_max: float = DEFAULT_DEBOUNCE_MAX) -> None:
        self.budget = Budget(budget)
        self.debounce = Debounce(debounce_after, debounce_max)
        self._pending: dict[int, Callable[[], None]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.pushes_released = 0  # wake-ups delivered (metrics)

    def __repr__(self) -> str:
        return (f"Pacer(budget {self.budget.used}/{self.budget.limit} bytes, "
                f"{len(self.budget.waiting)} waiting, {len(self._pending)} held)")

    # ---- change notifications ---------------------------------------------------------------

    def changed(self, wake: Callable[[], None]) -> None:
        if self.debounce.after <= 0 and self.debounce.maximum <= 0:
            wake()
            return
        self._pending[id(wake)] = wake
        self.debounce.changed(now())
        self._arm()

    def forget(self, wake: Callable[[], None]) -> None:
        self._pending.pop(id(wake), None)

    def _arm(self) -> None:
        """One timer; a deadline only moves later within a burst, so firing early and looking
        again is enough."""
        deadline = self.debounce.deadline()
        if deadline is None or self._timer is not None:
            return
        self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - now()),
                                                            self._fire)

    def _fire(self) -> None:
        self._timer = None
        if not self.debounce.due(now()):
            self._arm()
            return
        pending, self._pending = self._pending, {}
        self.pushes_released += len(pending)
        for wake in pending.values():
            wake()

    # ---- bytes in flight --------------------------------------------------------------------

    async def acquire(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        granted = loop.create_future()

        def grant() -> None:
            if not granted.done():
                granted.set_result(None)

        if self.budget.acquire(size, grant):
            return
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done():  # granted as we were cancelled: give it back
                self.budget.release(size)
            else:
                self.budget.forget(grant)
            raise

    def release(self, size: int) -> None:
        self.budget.release(size)
