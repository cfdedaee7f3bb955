"""Envoy's StreamRateLimiter arithmetic with explicit time."""

from __future__ import annotations

from proxy.http.stream_rate_limiter import RateLimiter, TokenBucket


def test_a_fill_interval_at_once_then_the_rate() -> None:
    limiter = RateLimiter(kbps=1, now=0.0)  # 1024 bytes a second, 51 bytes at first
    assert limiter.take(5000, 0.0) == 51
    assert limiter.take(5000, 0.0) == 0
    assert limiter.take(5000, 0.05) == 51  # one fill interval: 51.2 tokens, whole ones taken
    assert limiter.take(5000, 1.05) == 1024
    assert limiter.take(10, 5.0) == 10  # never more than asked
    assert limiter.take(5000, 5.0) == 1014  # capped at a second's worth


def test_token_bucket_refills_only_below_its_maximum() -> None:
    bucket = TokenBucket(max_tokens=100, fill_rate=10.0, now=0.0)
    assert bucket.consume(30, 0.0) == 30
    assert bucket.consume(100, 2.0) == 90  # 70 + 20
    assert bucket.consume(1, 2.0) == 0
