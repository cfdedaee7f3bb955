"""The ADS reconnect backoff as a plain object: Envoy's JitteredExponentialBackOffStrategy
with an injected random source."""

from __future__ import annotations

import random

import pytest

from proxy.xds.backoff import BackoffSettings, JitteredBackoff


class FixedRandom:
    """Always draws `value`: delays are value % interval ms, so intervals can be read off."""

    def __init__(self, value: int) -> None:
        self.value = value

    def getrandbits(self, k: int, /) -> int:
        return self.value


def test_intervals_double_from_base_to_max() -> None:
    # A draw of interval - 1 shows each interval: 500, 1000, ..., 16000, then 30000 (16000 is
    # not below 30000 / 2, so the interval jumps to the maximum and stays there).
    backoff = JitteredBackoff(BackoffSettings(), FixedRandom(2**40 - 1))
    intervals = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
    delays = [backoff.next_delay() for _ in intervals]
    assert delays == [((2**40 - 1) % interval) / 1000 for interval in intervals]
    draws_below = JitteredBackoff(BackoffSettings(), FixedRandom(999))
    assert [draws_below.next_delay() for _ in range(3)] == [0.499, 0.999, 0.999]


def test_delays_are_uniform_below_each_interval() -> None:
    backoff = JitteredBackoff(BackoffSettings(100, 250), random.Random(7))
    for bound in (0.1, 0.2, 0.25, 0.25):
        assert 0 <= backoff.next_delay() < bound
    samples = [JitteredBackoff(BackoffSettings(100, 250), random.Random(seed)).next_delay()
               for seed in range(400)]
    assert 0.04 < sum(samples) / len(samples) < 0.06  # mean of uniform [0, 100 ms)
    assert max(samples) < 0.1


def test_reset_starts_again_from_base() -> None:
    backoff = JitteredBackoff(BackoffSettings(100, 1000), FixedRandom(10**9 - 1))
    assert [backoff.next_delay() for _ in range(3)] == [0.099, 0.199, 0.399]
    backoff.reset()
    assert backoff.next_delay() == 0.099


def test_base_equal_to_max_never_grows() -> None:
    backoff = JitteredBackoff(BackoffSettings(300, 300), FixedRandom(10**9 - 1))
    assert [backoff.next_delay() for _ in range(3)] == [0.099, 0.099, 0.099]  # 1e9-1 % 300


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="base <= max"):
        JitteredBackoff(BackoffSettings(500, 100), FixedRandom(0))
