"""The background batcher: full batches when a batch fills, stragglers only on the timer,
flush_now() or close(); a full queue drops and counts."""

from __future__ import annotations

import threading

from proxy.observability.batching import BackgroundBatcher


def test_size_wakeups_send_full_batches_and_flush_sends_the_rest() -> None:
    sizes: list[int] = []
    lock = threading.Lock()

    def flush(batch: list[int]) -> None:
        with lock:
            sizes.append(len(batch))

    batcher: BackgroundBatcher[int] = BackgroundBatcher(flush, name="t", max_batch=10,
                                                        max_queue=10_000, interval=60.0)
    try:
        for item in range(1005):
            batcher.add(item)
        assert batcher.flush_now(timeout=10)
    finally:
        batcher.close()
    assert sum(sizes) == 1005
    assert all(size == 10 for size in sizes[:-1]) and sizes[-1] == 5, sizes


def test_full_queue_drops_and_counts() -> None:
    dropped: list[int] = []
    gate = threading.Event()
    batcher: BackgroundBatcher[int] = BackgroundBatcher(
        lambda batch: gate.wait(5), name="t", max_batch=1000, max_queue=3, interval=60.0,
        on_drop=dropped.append)
    try:
        for item in range(5):
            batcher.add(item)
        assert batcher.dropped == 2 and dropped == [1, 1]
    finally:
        gate.set()
        batcher.close()
