"""How long the ADS client waits before opening a new stream: Envoy's jittered exponential
backoff, sans-I/O (the caller sleeps; the random source is injected).

Envoy (source/common/common/backoff_strategy.cc, JitteredExponentialBackOffStrategy): the n-th
wait in a row is drawn uniformly from [0, interval) in whole milliseconds, where the interval
starts at the base and doubles while it is below half the maximum, then stays at the maximum.
The xDS gRPC stream (source/extensions/config_subscription/grpc/grpc_stream.h) waits one such
draw after each failed or closed stream and starts again from the base once a response arrives.

The base and maximum come from the ADS service's `envoy_grpc.retry_policy.retry_back_off`
(config.core.v3.BackoffStrategy: the maximum defaults to 10 x base); without it Envoy's xDS
defaults apply, 500 ms and 30 s (SubscriptionFactory::RetryInitialDelayMs / RetryMaxDelayMs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

DEFAULT_BASE_MS = 500
DEFAULT_MAX_MS = 30_000


class RandomSource(Protocol):
    def getrandbits(self, k: int, /) -> int: ...


@dataclass(frozen=True)
class BackoffSettings:
    base_ms: int = DEFAULT_BASE_MS
    max_ms: int = DEFAULT_MAX_MS


class JitteredBackoff:
    def __init__(self, settings: BackoffSettings, rng: RandomSource) -> None:
        if not 0 < settings.base_ms <= settings.max_ms:
            raise ValueError(f"backoff needs 0 < base <= max, not {settings}")
        self.settings = settings
        self.rng = rng
        self._interval = settings.base_ms

    def __repr__(self) -> str:
        return (f"JitteredBackoff(base={self.settings.base_ms}ms, max={self.settings.max_ms}ms, "
                f"next below {self._interval}ms)")

    def next_delay(self) -> float:
        """The next wait, in seconds: uniform over [0, interval) ms; the interval grows."""
        interval = self._interval
        doubling_limit = self.settings.max_ms // 2
        self._interval = interval * 2 if interval < doubling_limit else self.settings.max_ms
        return (self.rng.getrandbits(64) % interval) / 1000

    def reset(self) -> None:
        """A response arrived: the next wait is drawn below the base again."""
        self._interval = self.settings.base_ms
