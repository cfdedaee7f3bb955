"""Retry decisions (Envoy router "x-envoy-retry-on" / "x-envoy-retry-grpc-on"), sans-I/O.

`RetryState` counts attempts and decides, for each outcome of an attempt, what follows
(`decide`): `Retry(backoff)` (Envoy's jittered exponential back-off: a uniform pick in
[0, min(base * 2^n, max)) ), `Answer(flags)` (a failed attempt no retry follows: the router
answers locally) or `Done(flags)` (the response goes downstream as it is). The flags are
Envoy's for the answered attempt, in the order Envoy sets them (router.cc): why no retry
follows (RetryStatus::NoOverflow -> UO, NoRetryLimitExceeded -> URX), then a failure's own.
The retry budget (the cluster's max_retries circuit breaker) is asked only when a retry would
follow.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal, Protocol

from proxy.codec.headers import ResponseHead
from proxy.http.routing import header_matches
from proxy.model.route import RetryPolicy

Failure = Literal["connect_failure", "reset", "refused_stream", "per_try_timeout", "overflow"]


@dataclass(frozen=True, slots=True)
class Responded:
    """An attempt got a response head."""

    status: int
    grpc_status: int | None = None
    retriable_header: bool = False  # a header the policy's retriable_headers match


@dataclass(frozen=True, slots=True)
class Failed:
    """An attempt got no response head: its retry category and its own response flag."""

    failure: Failure
    flag: str


@dataclass(frozen=True, slots=True)
class Retry:
    backoff: float


@dataclass(frozen=True, slots=True)
class Answer:
    """No retry follows a failed attempt: answer locally, with these flags."""

    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Done:
    """No retry follows a response: it goes downstream, with these flags."""

    flags: tuple[str, ...] = ()


DONE = Done()


class Budget(Protocol):
    def acquire(self) -> bool:
        """A slot for one more retry (max_retries), or False (overflow counted)."""

_GRPC_CONDITIONS = {1: "cancelled", 4: "deadline-exceeded", 8: "resource-exhausted",
                    13: "internal", 14: "unavailable"}


@dataclass(frozen=True, slots=True)
class _ResponseHeaders:
    """A response head as header matchers read it (`:status` the pseudo-header)."""

    head: ResponseHead

    def header(self, name: str) -> str | None:
        return str(self.head.status) if name == ":status" else self.head.headers.joined(name)


def retriable_header(policy: RetryPolicy | None, head: ResponseHead) -> bool:
    """retry_on "retriable-headers": the response carries a header one of the policy's
    `retriable_headers` matches (router.md "x-envoy-retry-on"; the request's
    x-envoy-retriable-header-names is not read)."""
    if policy is None or not policy.retriable_headers:
        return False
    view = _ResponseHeaders(head)
    return any(header_matches(matcher, view) for matcher in policy.retriable_headers)


def status_is_retriable(policy: RetryPolicy, status: int, grpc_status: int | None,
                        retriable_header: bool = False) -> bool:
    on = policy.retry_on
    if "retriable-headers" in on and retriable_header:
        return True
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

    def should_retry_status(self, status: int, grpc_status: int | None,
                            retriable_header: bool = False) -> bool:
        return self.policy is not None and self.remaining > 0 and \
            status_is_retriable(self.policy, status, grpc_status, retriable_header)

    def should_retry_failure(self, failure: Failure) -> bool:
        return self.policy is not None and self.remaining > 0 and \
            failure_is_retriable(self.policy, failure)

    def would_retry_status(self, status: int, grpc_status: int | None,
                           retriable_header: bool = False) -> bool:
        """Retriable in kind, budget aside (to set URX when the budget ran out)."""
        return self.policy is not None and status_is_retriable(self.policy, status, grpc_status,
                                                               retriable_header)

    def would_retry_failure(self, failure: Failure) -> bool:
        """Retriable in kind, budget aside (Envoy RetryStatus::NoRetryLimitExceeded: URX)."""
        return self.policy is not None and failure_is_retriable(self.policy, failure)

    def abandon(self) -> None:
        """Give up retrying this request (Envoy router: the request body outgrew the retry
        buffer, so `retry_state_` is dropped): no further retry and no URX flag."""
        self.policy = None

    def decide(self, outcome: Responded | Failed, *, replayable: bool,
               budget: Budget) -> Retry | Answer | Done:
        """What follows an attempt (Envoy's RetryStateImpl::shouldRetryHeaders / ...Reset and
        router.cc's use of them). `replayable`: the request can be sent again (its body fit
        the retry buffer)."""
        if type(outcome) is Responded:
            return self.after_response(outcome, replayable=replayable, budget=budget)
        assert isinstance(outcome, Failed)
        return self.after_failure(outcome, replayable=replayable, budget=budget)

    def after_failure(self, outcome: Failed, *, replayable: bool,
                      budget: Budget) -> Retry | Answer:
        wanted = replayable and self.should_retry_failure(outcome.failure)
        if wanted and budget.acquire():
            return Retry(self.next_backoff())
        if wanted:
            return Answer(("UO", outcome.flag))  # max_retries said no
        if self.would_retry_failure(outcome.failure):
            return Answer(("URX", outcome.flag))
        return Answer((outcome.flag,))

    def after_response(self, outcome: Responded, *, replayable: bool,
                       budget: Budget) -> Retry | Done:
        if self.policy is None:
            return DONE
        if self.should_retry_status(outcome.status, outcome.grpc_status,
                                    outcome.retriable_header) and replayable:
            if budget.acquire():
                return Retry(self.next_backoff())
            return Done(("UO",))
        if self.would_retry_status(outcome.status, outcome.grpc_status,
                                   outcome.retriable_header):
            return Done(("URX",))
        return DONE

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
