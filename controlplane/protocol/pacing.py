"""How changes reach streams: a debounce of bursts and a budget of bytes in flight, sans-I/O.

`Debounce` coalesces a burst of changes into one push, as istiod's PILOT_DEBOUNCE_AFTER /
PILOT_DEBOUNCE_MAX do: the push happens `after` seconds after the last change of a burst, and
no later than `maximum` seconds after its first, so a steady stream of changes still goes out.
With a `cooldown` factor it also adapts to load: after a push whose own work took `cost`
seconds (`done`), the next waits until `cooldown * cost` seconds have passed (still no later
than `maximum` after its first change). A push that is cheap (few streams, a quiet machine)
keeps the short `after`; one that is dear (every connected sidecar woken, a loaded machine)
spaces the next, so pushes take at most about 1 / (1 + cooldown) of the time however many
changes come.

`Budget` bounds the bytes of responses being written at once (admission control and
backpressure): a stream asks before it encodes a response and gives the bytes back when the
write completed. A storm of new streams, or a change seen by ten thousand of them, then waits
its turn instead of encoding every response at once (memory) and queueing them all in gRPC
(which is what made streams fail in a storm, docs/controlplane.md "Connection storms"). One
response larger than the whole budget is let through alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Debounce:
    """Feed `changed(now)`; `due(now)` says when the coalesced push may go."""

    after: float = 0.1
    maximum: float = 1.0
    cooldown: float = 0.0
    first: float | None = None
    last: float = 0.0
    not_before: float = 0.0

    def changed(self, now: float) -> None:
        if self.first is None:
            self.first = now
        self.last = now

    def deadline(self) -> float | None:
        """When to look again (None: nothing pending)."""
        if self.first is None:
            return None
        return min(max(self.last + self.after, self.not_before), self.first + self.maximum)

    def done(self, now: float, cost: float) -> None:
        """The push ended at `now`, its own work took `cost` seconds: space the next one."""
        self.not_before = now + self.cooldown * max(0.0, cost)

    def due(self, now: float) -> bool:
        """True (and the burst is over) when the pending changes should be pushed now."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return False
        self.first = None
        return True


@dataclass
class Budget:
    """Bytes that may be in flight at once; waiters are served in order of arrival."""

    limit: int
    used: int = 0
    waiting: deque[tuple[int, Callable[[], None]]] = field(default_factory=deque)
    granted: int = 0  # grants so far (metrics)
    queued: int = 0  # grants that had to wait (metrics)

    def acquire(self, size: int, grant: Callable[[], None]) -> bool:
        """True when `size` bytes are granted now; else `grant()` is called when they are."""
        size = min(size, self.limit)
        if not self.waiting and self.used + size <= self.limit:
            self.used += size
            self.granted += 1
            return True
        self.waiting.append((size, grant))
        self.queued += 1
        return False

    def release(self, size: int) -> None:
        self.used -= min(size, self.limit)
        while self.waiting and self.used + self.waiting[0][0] <= self.limit:
            size, grant = self.waiting.popleft()
            self.used += size
            self.granted += 1
            grant()

    def forget(self, grant: Callable[[], None]) -> None:
        """A waiter gave up (its stream ended)."""
        for item in list(self.waiting):
            if item[1] is grant:
                self.waiting.remove(item)
        self.release(0)
