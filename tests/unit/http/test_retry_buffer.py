"""The router's retry buffer (Envoy router.cc decodeData): the body is kept for a retry while
it fits the limit; past it the request gives up retrying and counts the abandonment."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from proxy.codec.headers import Headers, RequestHead
from proxy.http.body import BodyChannel
from proxy.http.filter import HttpStream
from proxy.http.retry import RetryState
from proxy.http.router import _BodyReplay
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
    replay = _BodyReplay(channel, retries, 100, _runtime())
    assert await replay.buffer_during(0.01, _stream())
    assert replay.replayable and replay.chunks == [b"a" * 100]
    assert retries.remaining == 2


async def test_outgrowing_the_buffer_during_back_off_abandons_the_retry() -> None:
    channel = BodyChannel()
    channel.push(b"a" * 60)
    channel.push(b"a" * 60)
    retries = RetryState(_policy())
    runtime = _runtime()
    replay = _BodyReplay(channel, retries, 100, runtime)
    assert not await replay.buffer_during(5, _stream())  # returns at once, not after 5 s
    assert not replay.replayable and replay.chunks == []
    assert retries.policy is None and not retries.should_retry_status(503, None)
    assert _abandoned(runtime).value == 1


async def test_without_a_retry_policy_nothing_is_kept() -> None:
    channel = BodyChannel()
    channel.push(b"a" * 1000)
    channel.end()
    replay = _BodyReplay(channel, RetryState(None), 10, _runtime())
    assert await replay.buffer_during(0.01, _stream())
    assert replay.chunks == [] and replay.replayable


async def test_back_off_waits_even_when_the_body_is_complete() -> None:
    channel = BodyChannel()
    channel.end()
    replay = _BodyReplay(channel, RetryState(_policy()), 10)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await replay.buffer_during(0.05, _stream())
    assert loop.time() - started >= 0.04
