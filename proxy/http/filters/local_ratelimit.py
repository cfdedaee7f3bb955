"""`envoy.filters.http.local_ratelimit`: a token bucket per filter chain (or per connection).

Envoy doc: configuration/http/http_filters/local_rate_limit_filter. `filter_enabled` and
`filter_enforced` default to 0% (the filter does nothing until enabled). A limited request gets
`status` (429 by default) with body "local_rate_limited", flag RL, `response_headers_to_add`,
and the x-ratelimit-* headers when `enable_x_ratelimit_headers: DRAFT_VERSION_03`. Without a
`token_bucket` (valid in the HCM's config, where Envoy leaves limits to per-route configs) the
filter counts `enabled` and `ok` and limits nothing.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, HttpStream, LocalReply, register_http_filter
from proxy.http.header_mutation import HeaderAddition, apply_additions, translate_header_additions
from proxy.http.headers import Headers, ResponseHead


@dataclass(frozen=True)
class LocalRateLimitConfig:
    stat_prefix: str
    status: int
    max_tokens: int
    tokens_per_fill: int
    fill_interval: float
    enabled_percent: float
    enforced_percent: float
    response_headers: tuple[HeaderAddition, ...]
    headers_when_not_enforced: tuple[HeaderAddition, ...]
    x_ratelimit_headers: bool
    per_connection: bool


class TokenBucket:
    """Sans-I/O token bucket: whole refills every `fill_interval` (Envoy's timer-based fill)."""

    def __init__(self, max_tokens: int, tokens_per_fill: int, fill_interval: float,
                 now: float) -> None:
        self.max_tokens = max_tokens
        self.tokens_per_fill = tokens_per_fill
        self.fill_interval = fill_interval
        self.tokens = max_tokens
        self.last_fill = now

    def _refill(self, now: float) -> None:
        fills = math.floor((now - self.last_fill) / self.fill_interval)
        if fills > 0:
            self.tokens = min(self.max_tokens, self.tokens + fills * self.tokens_per_fill)
            self.last_fill += fills * self.fill_interval

    def consume(self, now: float) -> bool:
        self._refill(now)
        if self.tokens > 0:
            self.tokens -= 1
            return True
        return False

    def reset_in(self, now: float) -> float:
        return max(0.0, self.last_fill + self.fill_interval - now)


def _percent(fractional: Any) -> float:
    default = fractional.default_value
    denominator = {0: 100, 1: 10_000, 2: 1_000_000}[default.denominator]
    return 100.0 * default.numerator / denominator


def translate(message: Message) -> LocalRateLimitConfig:
    m: Any = message
    for descriptor, _ in m.ListFields():
        if descriptor.name not in {"stat_prefix", "status", "token_bucket", "filter_enabled",
                                   "filter_enforced", "response_headers_to_add",
                                   "request_headers_to_add_when_not_enforced",
                                   "enable_x_ratelimit_headers",
                                   "local_rate_limit_per_downstream_connection"}:
            raise unsupported(descriptor.name)
    if not m.stat_prefix:
        raise ConfigError("stat_prefix is required", field="stat_prefix")
    bucket = m.token_bucket
    # No token_bucket is valid in the HCM's filter config (Envoy's FilterConfig: "no token
    # bucket is fine for the global config"): the filter then limits nothing (fill_interval 0,
    # as LocalRateLimiterImpl ignores a default bucket with a 0 fill interval).
    interval = bucket.fill_interval.seconds + bucket.fill_interval.nanos / 1e9
    if m.HasField("token_bucket") and interval < 0.05:
        raise ConfigError("must be at least 50ms", field="token_bucket.fill_interval")
    return LocalRateLimitConfig(
        stat_prefix=m.stat_prefix,
        status=m.status.code if m.HasField("status") and m.status.code else 429,
        max_tokens=bucket.max_tokens,
        tokens_per_fill=bucket.tokens_per_fill.value if bucket.HasField("tokens_per_fill")
        else 1,
        fill_interval=interval,
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


class LocalRateLimitFilter(HttpFilter):
    def __init__(self, config: LocalRateLimitConfig, bucket: TokenBucket | None, stats: Any,
                 clock: Callable[[], float], rng: random.Random) -> None:
        self.config = config
        self.bucket = bucket
        self.stats = stats
        self.clock = clock
        self.rng = rng
        self._limited_headers = False

    def _count(self, name: str) -> None:
        self.stats.counter(f"{self.config.stat_prefix}.http_local_rate_limit.{name}").inc()

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        config = self.config
        if self.rng.uniform(0, 100) >= config.enabled_percent:
            return None
        self._count("enabled")
        if self.bucket is None:  # no token bucket: every request is allowed
            self._count("ok")
            return None
        allowed = self.bucket.consume(self.clock())
        self._limited_headers = config.x_ratelimit_headers
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
        self._limited_headers = False
        return LocalReply(config.status, "local_rate_limited", headers=headers,
                          details="local_rate_limited", flag="RL")

    def on_response_headers(self, stream: HttpStream, head: ResponseHead) -> None:
        if self._limited_headers:
            self._add_x_ratelimit(head.headers)

    def _add_x_ratelimit(self, headers: Headers) -> None:
        if not self.config.x_ratelimit_headers or self.bucket is None:
            return
        now = self.clock()
        headers.set("x-ratelimit-limit", str(self.bucket.max_tokens))
        headers.set("x-ratelimit-remaining", str(max(self.bucket.tokens, 0)))
        headers.set("x-ratelimit-reset", str(math.ceil(self.bucket.reset_in(now))))


class LocalRateLimitFactory:
    name = "envoy.filters.http.local_ratelimit"
    config_type = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"

    def translate(self, message: Message) -> LocalRateLimitConfig:
        return translate(message)

    def create(self, config: LocalRateLimitConfig, context: ServerContext, *,
               stat_prefix: str = "",
               clock: Callable[[], float] = time.monotonic) -> FilterMaker:
        if config.per_connection:
            raise unsupported("local_rate_limit_per_downstream_connection")
        bucket = TokenBucket(config.max_tokens, config.tokens_per_fill, config.fill_interval,
                             clock()) if config.fill_interval > 0 else None
        rng = random.Random()
        return lambda: LocalRateLimitFilter(config, bucket, context.stats, clock, rng)


register_http_filter(LocalRateLimitFactory())
