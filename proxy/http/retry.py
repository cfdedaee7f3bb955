"""Retry decisions (Envoy router "x-envoy-retry-on" / "x-envoy-retry-grpc-on"), pure.

`RetryState` counts attempts and answers, for each outcome of an attempt, whether to retry
and after how long (Envoy's jittered exponential back-off: a uniform pick in
[0, min(base * 2^n, max)) ).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from proxy.model.route import RetryPolicy

Failure = Literal["connect_failure", "reset", "refused_stream", "per_try_timeout", "overflow"]

_GRPC_CONDITIONS = {1: "cancelled", 4: "deadline-exceeded", 8: "resource-exhausted",
                    13: "internal", 14: "unavailable"}


def status_is_retriable(policy: RetryPolicy, status: int, grpc_status: int | None) -> bool:
    on = policy.retry_on
    if "5xx" in on and status >= 500:
        return True
    if "gateway-error" in on and status in (502, 503, 504):
        return True
    if "retriable-4xx" in on and status == 409:
        return True
    if "retriable-status-codes" in on and status in policy.retriable_status_codes:
        return True
    return grpc_status is not None and _GRPC_CONDITIONS.get(grpc_status, "") in on


def failure_is_retriable(policy: RetryPolicy, failure: Failure) -> bool:
    """Envoy's RetryStateImpl::wouldRetryFromReset. A per-try timeout is a local reset of an
    attempt whose request went out; a connect failure is a reset before the request went
    out; every other failure happens after it did. Checked against Envoy 1.40."""
    if failure == "overflow":
        return False  # a circuit breaker said no: retrying would defeat it
    on = policy.retry_on
    if failure == "refused_stream" and "refused-stream" in on:
        return True
    if on & {"5xx", "gateway-error", "reset"}:
        return True  # "reset": any disconnect, reset or read (per-try) timeout
    return failure == "connect_failure" and bool(on & {"connect-failure",
                                                       "reset-before-request"})


@dataclass
class RetryState:
    policy: RetryPolicy | None
    rng: random.Random = field(default_factory=random.Random)
    retries_done: int = 0

    @property
    def remaining(self) -> int:
        return 0 if self.policy is None else self.policy.num_retries - self.retries_done

    def should_retry_status(self, status: int, grpc_status: int | None) -> bool:
        return self.policy is not None and self.remaining > 0 and \
            status_is_retriable(self.policy, status, grpc_status)

    def should_retry_failure(self, failure: Failure) -> bool:
        return self.policy is not None and self.remaining > 0 and \
            failure_is_retriable(self.policy, failure)

    def would_retry_status(self, status: int, grpc_status: int | None) -> bool:
        """Retriable in kind, budget aside (to set URX when the budget ran out)."""
        return self.policy is not None and status_is_retriable(self.policy, status, grpc_status)

    def would_retry_failure(self, failure: Failure) -> bool:
        """Retriable in kind, budget aside (Envoy RetryStatus::NoRetryLimitExceeded: URX)."""
        return self.policy is not None and failure_is_retriable(self.policy, failure)

    def abandon(self) -> None:
        """Give up retrying this request (Envoy router: the request body outgrew the retry
        buffer, so `retry_state_` is dropped): no further retry and no URX flag."""
        self.policy = None

    def next_backoff(self) -> float:
        assert self.policy is not None
        ceiling = min(self.policy.backoff_base * (2 ** self.retries_done),
                      self.policy.backoff_max)
        self.retries_done += 1
        return self.rng.uniform(0, ceiling)


_GRPC_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(value: str | None) -> float | None:
    """`grpc-timeout` (gRPC over HTTP/2 spec: 1-8 digits and a unit) in seconds, or None."""
    if not value or len(value) < 2 or len(value) > 9:
        return None
    digits, unit = value[:-1], value[-1]
    if not digits.isdigit() or unit not in _GRPC_UNITS:
        return None
    return int(digits) * _GRPC_UNITS[unit]


_GRPC_TEXT: dict[float, str] = {}
_GRPC_MAX_VALUE = 99_999_999  # at most 8 digits
_GRPC_DIVISORS = (1000, 60, 60)  # m -> S -> M -> H


def grpc_timeout_text(seconds: float) -> str:
    """`seconds` as a grpc-timeout value the way Envoy writes one (Grpc::Common::toGrpcTimeout):
    whole milliseconds, moving to S, M, then H while the value needs more than 8 digits."""
    text = _GRPC_TEXT.get(seconds)
    if text is not None:
        return text
    value, unit = int(seconds * 1000), 0
    while value > _GRPC_MAX_VALUE and unit < len(_GRPC_DIVISORS):
        value //= _GRPC_DIVISORS[unit]
        unit += 1
    text = f"{min(value, _GRPC_MAX_VALUE)}{'mSMH'[unit]}"
    if len(_GRPC_TEXT) < 256:  # values follow client headers: keep the cache small
        _GRPC_TEXT[seconds] = text
    return text
