"""What a request keeps for its retries (proxy.http.replay). The retry buffer (Envoy router.cc
decodeData): the body is kept for a retry while it fits the limit; past it the request gives
up retrying and counts the abandonment. The retry budget: one max_retries slot per retry in
flight. The body pump: an early end is expected, anything else is logged."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from proxy.codec.headers import Headers, RequestHead
from proxy.http.body import BodyChannel, StreamResetError
from proxy.http.filter import HttpStream
from proxy.http.replay import BodyReplay, RetryBudget, log_pump_failure
from proxy.http.retry import RetryState
from proxy.model.route import RetryPolicy
from proxy.stats import Counter, Stats


def _policy() -> RetryPolicy:
    return RetryPolicy(retry_on=frozenset({"5xx"}), num_retries=2)


def _stream() -> HttpStream:
    return HttpStream(RequestHead("POST", "/", "x", "http", Headers()), ("127.0.0.1", 1),
                      ("127.0.0.1", 2), 1)


def _runtime() -> SimpleNamespace:
    """The cluster runtime as the replay sees it: its stats and stat prefix."""
    return SimpleNamespace(stats=Stats(), prefix="cluster.c.")


def _abandoned(runtime: SimpleNamespace) -> Counter:
    counter: Counter = runtime.stats.counter("cluster.c.retry_or_shadow_abandoned")
    return counter


async def test_a_body_within_the_limit_stays_replayable() -> None:
    channel = BodyChannel()
    channel.push(b"a" * 100)
    channel.end()
    retries = RetryState(_policy())
    replay = BodyReplay(channel, retries, 100, _runtime())
    assert await replay.buffer_during(0.01, _stream())
    assert replay.replayable and replay.chunks == [b"a" * 100]
    assert retries.remaining == 2


async def test_outgrowing_the_buffer_during_back_off_abandons_the_retry() -> None:
    channel = BodyChannel()
    channel.push(b"a" * 60)
    channel.push(b"a" * 60)
    retries = RetryState(_policy())
    runtime = _runtime()
    replay = BodyReplay(channel, retries, 100, runtime)
    assert not await replay.buffer_during(5, _stream())  # returns at once, not after 5 s
    assert not replay.replayable and replay.chunks == []
    assert retries.policy is None and not retries.should_retry_status(503, None)
    assert _abandoned(runtime).value == 1


async def test_without_a_retry_policy_nothing_is_kept() -> None:
    channel = BodyChannel()
    channel.push(b"a" * 1000)
    channel.end()
    replay = BodyReplay(channel, RetryState(None), 10, _runtime())
    assert await replay.buffer_during(0.01, _stream())
    assert replay.chunks == [] and replay.replayable


async def test_back_off_waits_even_when_the_body_is_complete() -> None:
    channel = BodyChannel()
    channel.end()
    replay = BodyReplay(channel, RetryState(_policy()), 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await replay.buffer_during(0.05, _stream())
    assert loop.time() - started >= 0.04


def test_the_budget_holds_one_slot_per_retry_in_flight() -> None:
    """max_retries 1: a second retry is refused while the first is in flight; acquiring
    again releases the previous slot first (that retry's attempt is over)."""
    from proxy.upstream.circuit_breakers import CircuitBreaker, RoutingPriority, Thresholds

    breaker = CircuitBreaker("c", RoutingPriority.DEFAULT, Thresholds(max_retries=1), Stats())
    runtime = SimpleNamespace(circuit_breaker=lambda: breaker)
    first, second = RetryBudget(runtime), RetryBudget(runtime)
    assert first.acquire()
    assert not second.acquire()  # overflow: the first retry holds the only slot
    assert first.acquire()  # its previous slot is given back first
    first.release()
    assert second.acquire()


@pytest.mark.parametrize("outcome", [None, asyncio.CancelledError(), StreamResetError("x"),
                                     ConnectionResetError("gone")])
def test_early_ends_are_not_errors(outcome: object,
                                   caplog: pytest.LogCaptureFixture) -> None:
    log_pump_failure(outcome)
    assert not caplog.records


def test_anything_else_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    log_pump_failure(KeyError("bug"))
    assert "request body pump failed" in caplog.text
    assert "KeyError" in caplog.text
