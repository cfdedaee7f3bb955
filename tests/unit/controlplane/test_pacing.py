"""Debounce of change bursts and the budget of response bytes in flight (sans-I/O)."""

from __future__ import annotations

from controlplane.protocol.pacing import Budget, Debounce


def test_a_burst_goes_out_after_it_settles_or_at_the_latest_after_the_maximum():
    debounce = Debounce(after=0.1, maximum=1.0)
    assert debounce.deadline() is None and not debounce.due(5.0)
    debounce.changed(0.0)
    debounce.changed(0.05)
    assert abs((debounce.deadline() or 0.0) - 0.15) < 1e-9
    assert not debounce.due(0.1) and debounce.due(0.16)
    assert debounce.deadline() is None  # the burst is over
    for step in range(20):  # a steady stream of changes, 50 ms apart
        debounce.changed(10.0 + step * 0.05)
    assert not debounce.due(10.9) and debounce.due(11.0)


def test_the_budget_admits_in_order_and_lets_an_oversized_response_through_alone():
    budget = Budget(limit=100)
    granted: list[str] = []
    assert budget.acquire(60, lambda: granted.append("first"))
    assert not budget.acquire(60, lambda: granted.append("second"))
    assert not budget.acquire(10, lambda: granted.append("third"))  # waits its turn
    budget.release(60)
    assert granted == ["second", "third"] and budget.used == 70
    budget.release(60)
    budget.release(10)
    assert budget.acquire(500, lambda: granted.append("big")) and budget.used == 100
    assert not budget.acquire(1, lambda: granted.append("after"))
    budget.release(500)
    assert granted[-1] == "after" and budget.used == 1


def test_a_waiter_that_gives_up_frees_its_place():
    budget = Budget(limit=10)
    assert budget.acquire(10, lambda: None)
    got: list[int] = []

    def late() -> None:
        got.append(1)

    assert not budget.acquire(5, late)
    budget.forget(late)
    budget.release(10)
    assert got == [] and budget.used == 0 and not budget.waiting


def test_a_dear_push_spaces_the_next_one_within_the_maximum():
    debounce = Debounce(after=0.1, maximum=5.0, cooldown=8.0)
    debounce.changed(0.0)
    assert debounce.due(0.1)
    debounce.done(0.5, cost=0.4)  # the push took 0.4 s: the next waits until 0.5 + 3.2
    debounce.changed(0.6)
    assert abs((debounce.deadline() or 0.0) - 3.7) < 1e-9
    assert not debounce.due(0.8) and not debounce.due(3.6) and debounce.due(3.7)
    debounce.done(3.7, cost=10.0)  # dearer than the maximum allows
    debounce.changed(4.0)
    assert not debounce.due(8.9) and debounce.due(9.0)  # 5 s after the burst's first change


def test_a_cheap_push_keeps_the_short_delay():
    debounce = Debounce(after=0.1, maximum=5.0, cooldown=8.0)
    debounce.changed(0.0)
    assert debounce.due(0.1)
    debounce.done(0.1, cost=0.001)
    debounce.changed(0.2)
    assert debounce.due(0.31)
