"""A bounded queue drained by one background thread: the export path of logs and spans.

The data path only appends to a deque (no lock, no I/O, no await); a daemon thread wakes every
`interval` seconds, or as soon as a batch is full, and hands batches to `flush`, which may block
(disk, network). When the queue is full new items are dropped and counted, so a slow disk or a
dead collector never slows or breaks traffic (issue 5: "bounded queue, dropped and counted").
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
LOG = logging.getLogger(__name__)


class BackgroundBatcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], None], *, name: str, max_queue: int = 2048,
                 max_batch: int = 512, interval: float = 1.0,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self._flush = flush
        self._queue: deque[T] = deque()
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._interval = interval
        self._on_drop = on_drop
        self._wake = threading.Event()
        self._draining = False
        self._closed = False
        self._flush_requested = False
        self.dropped = 0
        self.flushed = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, item: T) -> None:
        """Queue one item; never blocks. Drops (and counts) when the queue is full."""
        if len(self._queue) >= self._max_queue or self._closed:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(1)
            return
        self._queue.append(item)
        if len(self._queue) >= self._max_batch:
            self._wake.set()

    def __len__(self) -> int:
        return len(self._queue)

    def flush_now(self, timeout: float = 5.0) -> bool:
        """Ask the thread to drain everything queued so far; True when it did within timeout."""
        deadline = time.monotonic() + timeout
        while self._queue or self._draining:
            if time.monotonic() > deadline:
                return False
            self._flush_requested = True
            self._wake.set()
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Drain what is queued (bounded by `timeout`) and stop the thread."""
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            woken = self._wake.wait(self._interval)
            self._wake.clear()
            # A full batch wakes the thread early: send full batches only. The interval timer,
            # flush_now() and close() send what is queued, partial batch included. Sending the
            # stragglers on every wake-up made exports of two or three spans each under load.
            everything = not woken or self._closed or self._flush_requested
            self._flush_requested = False
            self._draining = True
            try:
                self._drain(everything)
            finally:
                self._draining = False
            if self._closed:
                return

    def _drain(self, everything: bool) -> None:
        # Only what is queued now: items added meanwhile wait for their own batch.
        remaining = len(self._queue) if everything else \
            len(self._queue) - len(self._queue) % self._max_batch
        popleft = self._queue.popleft
        while remaining > 0:
            size = min(self._max_batch, remaining, len(self._queue))
            if size <= 0:
                return
            batch: list[T] = [popleft() for _ in range(size)]  # only this thread pops
            remaining -= size
            try:
                self._flush(batch)
                self.flushed += len(batch)
            except Exception:  # the exporter's failure must not kill the thread
                self.failures += 1
                LOG.warning("%s: export of %d items failed", self._thread.name, len(batch),
                            exc_info=True)

    def __repr__(self) -> str:
        return (f"BackgroundBatcher({self._thread.name}, queued={len(self._queue)}, "
                f"flushed={self.flushed}, dropped={self.dropped})")
