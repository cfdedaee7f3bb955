"""`envoy.filters.http.local_ratelimit`: a token bucket per filter chain (or per connection).

Envoy doc: configuration/http/http_filters/local_rate_limit_filter. `filter_enabled` and
`filter_enforced` default to 0% (the filter does nothing until enabled). A limited request gets
`status` (429 by default) with body "local_rate_limited", flag RL, `response_headers_to_add`,
and the x-ratelimit-* headers when `enable_x_ratelimit_headers: DRAFT_VERSION_03`.

The bucket refills continuously, pro rata: `tokens_per_fill` per `fill_interval`, capped at
`max_tokens`, as Envoy 1.40's `RateLimitTokenBucket` over `AtomicTokenBucketImpl`
(source/extensions/filters/common/local_ratelimit/local_ratelimit_impl.cc,
source/common/common/token_bucket_impl.h); there is no fill timer. Without a `token_bucket`
Envoy has no default bucket and lets every request through (counted enabled/ok, no headers).
With `local_rate_limit_per_downstream_connection` each downstream connection has its own
bucket (Envoy keeps it in the connection's filter state). Under `--concurrency N` each worker
process has its own buckets, where Envoy's worker threads share one: the limit is per worker.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.codec.headers import Headers, ResponseHead
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, HttpStream, LocalReply, register_http_filter
from proxy.http.header_mutation import apply_additions
from proxy.model.fields import reject_unsupported
from proxy.model.header_mutation import HeaderAddition, translate_header_additions


class TokenBucket:
    """Sans-I/O continuous token bucket (Envoy's AtomicTokenBucketImpl): the state is one
    instant, `_empty_at`, when the bucket would have been empty; the tokens at `now` are
    min(max_tokens, (now - _empty_at) * fill_rate). Taking a token moves that instant forward
    by 1 / fill_rate. It starts full."""

    def __init__(self, max_tokens: int, tokens_per_fill: int, fill_interval: float,
                 now: float) -> None:
        self.max_tokens = max_tokens
        self.fill_rate = tokens_per_fill / fill_interval  # tokens per second
        self._empty_at = now - max_tokens / self.fill_rate

    def tokens(self, now: float) -> float:
        return min(float(self.max_tokens), (now - self._empty_at) * self.fill_rate)

    def consume(self, now: float) -> bool:
        available = self.tokens(now)
        if available < 1:
            return False
        self._empty_at = now - (available - 1) / self.fill_rate
        return True

    def remaining(self, now: float) -> int:
        """x-ratelimit-remaining: whole tokens left (Envoy truncates remainingTokens())."""
        return int(self.tokens(now))

    def reset_seconds(self, now: float) -> int:
        """x-ratelimit-reset: 0 while a token is available, else the seconds until the next
        one, rounded up (Envoy: nextTokenAvailable() in whole milliseconds, then seconds)."""
        available = self.tokens(now)
        if available >= 1:
            return 0
        milliseconds = math.ceil((1 - available) / self.fill_rate * 1000)
        return math.ceil(milliseconds / 1000)


@dataclass(frozen=True)
class BucketSettings:
    max_tokens: int
    tokens_per_fill: int
    fill_interval: float  # seconds, whole milliseconds as Envoy reads it

    def new_bucket(self, now: float) -> TokenBucket:
        return TokenBucket(self.max_tokens, self.tokens_per_fill, self.fill_interval, now)


@dataclass(frozen=True)
class LocalRateLimitConfig:
    stat_prefix: str
    status: int
    bucket: BucketSettings | None  # None: no token_bucket, nothing is limited
    enabled_percent: float
    enforced_percent: float
    response_headers: tuple[HeaderAddition, ...]
    headers_when_not_enforced: tuple[HeaderAddition, ...]
    x_ratelimit_headers: bool
    per_connection: bool


def _percent(fractional: Any) -> float:
    default = fractional.default_value
    denominator = {0: 100, 1: 10_000, 2: 1_000_000}[default.denominator]
    return 100.0 * default.numerator / denominator


def _bucket_settings(bucket: Any) -> BucketSettings:
    # Envoy reads the interval in whole milliseconds (PROTOBUF_GET_MS_OR_DEFAULT) and refuses
    # one under 50 ms; max_tokens and tokens_per_fill must be > 0 (token_bucket.proto rules).
    milliseconds = bucket.fill_interval.seconds * 1000 + bucket.fill_interval.nanos // 1_000_000
    if milliseconds < 50:
        raise ConfigError("local rate limit token bucket fill timer must be >= 50ms",
                          field="token_bucket.fill_interval")
    if bucket.max_tokens <= 0:
        raise ConfigError("must be greater than 0", field="token_bucket.max_tokens")
    tokens_per_fill = bucket.tokens_per_fill.value if bucket.HasField("tokens_per_fill") else 1
    if tokens_per_fill <= 0:
        raise ConfigError("must be greater than 0", field="token_bucket.tokens_per_fill")
    return BucketSettings(bucket.max_tokens, tokens_per_fill, milliseconds / 1000)


def translate(message: Message) -> LocalRateLimitConfig:
    m: Any = message
    reject_unsupported(m, {"stat_prefix", "status", "token_bucket", "filter_enabled",
                           "filter_enforced", "response_headers_to_add",
                           "request_headers_to_add_when_not_enforced",
                           "enable_x_ratelimit_headers",
                           "local_rate_limit_per_downstream_connection"})
    if not m.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    return LocalRateLimitConfig(
        stat_prefix=m.stat_prefix,
        status=m.status.code if m.HasField("status") and m.status.code else 429,
        bucket=_bucket_settings(m.token_bucket) if m.HasField("token_bucket") else None,
        enabled_percent=_percent(m.filter_enabled) if m.HasField("filter_enabled") else 0.0,
        enforced_percent=_percent(m.filter_enforced) if m.HasField("filter_enforced") else 0.0,
        response_headers=translate_header_additions(m.response_headers_to_add,
                                                    "response_headers_to_add"),
        headers_when_not_enforced=translate_header_additions(
            m.request_headers_to_add_when_not_enforced,
            "request_headers_to_add_when_not_enforced"),
        x_ratelimit_headers=m.enable_x_ratelimit_headers == 1,
        per_connection=m.local_rate_limit_per_downstream_connection,
    )


class Buckets:
    """Where a filter finds its bucket: one for the whole filter chain (shared by every stream
    of its connections), or one per downstream connection, kept in the connection's state as
    Envoy keeps its PerConnectionRateLimiter (filter state, LifeSpan::Connection)."""

    def __init__(self, settings: BucketSettings, per_connection: bool,
                 clock: Callable[[], float]) -> None:
        self.settings = settings
        self.per_connection = per_connection
        self.shared = None if per_connection else settings.new_bucket(clock())

    def for_stream(self, stream: HttpStream, now: float) -> TokenBucket:
        if self.shared is not None:
            return self.shared
        bucket: TokenBucket | None = stream.connection_state.get(self)
        if bucket is None:
            bucket = stream.connection_state[self] = self.settings.new_bucket(now)
        return bucket


class LocalRateLimitFilter(HttpFilter):
    def __init__(self, config: LocalRateLimitConfig, buckets: Buckets | None, stats: Any,
                 clock: Callable[[], float], rng: random.Random) -> None:
        self.config = config
        self.buckets = buckets
        self.stats = stats
        self.clock = clock
        self.rng = rng
        self._bucket: TokenBucket | None = None  # the bucket whose x-ratelimit-* to send

    def _count(self, name: str) -> None:
        self.stats.counter(f"{self.config.stat_prefix}.http_local_rate_limit.{name}").inc()

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        config = self.config
        if self.rng.uniform(0, 100) >= config.enabled_percent:
            return None
        self._count("enabled")
        if self.buckets is None:  # no token_bucket: Envoy allows, without x-ratelimit-*
            self._count("ok")
            return None
        now = self.clock()
        bucket = self.buckets.for_stream(stream, now)
        allowed = bucket.consume(now)
        if config.x_ratelimit_headers:
            self._bucket = bucket
        if allowed:
            self._count("ok")
            return None
        self._count("rate_limited")
        if self.rng.uniform(0, 100) >= config.enforced_percent:
            apply_additions(stream.request.headers, config.headers_when_not_enforced, stream)
            return None
        self._count("enforced")
        headers = Headers()
        apply_additions(headers, config.response_headers, stream)
        self._add_x_ratelimit(headers)
        self._bucket = None
        return LocalReply(config.status, "local_rate_limited", headers=headers,
                          details="local_rate_limited", flag="RL")

    def on_response_headers(self, stream: HttpStream, head: ResponseHead) -> None:
        self._add_x_ratelimit(head.headers)

    def _add_x_ratelimit(self, headers: Headers) -> None:
        # Envoy adds them in encodeHeaders, so the values are the bucket's at response time.
        bucket = self._bucket
        if bucket is None:
            return
        now = self.clock()
        headers.set("x-ratelimit-limit", str(bucket.max_tokens))
        headers.set("x-ratelimit-remaining", str(bucket.remaining(now)))
        headers.set("x-ratelimit-reset", str(bucket.reset_seconds(now)))


class LocalRateLimitFactory:
    name = "envoy.filters.http.local_ratelimit"
    config_type = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

    def translate(self, message: Message) -> LocalRateLimitConfig:
        return translate(message)

    def create(self, config: LocalRateLimitConfig, context: ServerContext, *,
               stat_prefix: str = "", name: str = "",
               clock: Callable[[], float] = time.monotonic) -> FilterMaker:
        buckets = Buckets(config.bucket, config.per_connection, clock) \
            if config.bucket is not None else None
        rng = random.Random()
        return lambda: LocalRateLimitFilter(config, buckets, context.stats, clock, rng)


register_http_filter(LocalRateLimitFactory())
