"""The retry decision (proxy.http.retry), sans-I/O: what follows each outcome of an attempt,
with Envoy's flags; and which attempt failures each retry_on condition retries (Envoy's
RetryStateImpl::wouldRetryFromReset; the same table is checked against the Envoy binary in
tests/conformance/proxy/http/test_retry_on_vs_envoy.py for connect failures and per-try
timeouts)."""

from __future__ import annotations

import pytest

from proxy.http.retry import (
    Answer,
    Done,
    Failed,
    Failure,
    Responded,
    Retry,
    RetryState,
    failure_is_retriable,
)
from proxy.model.route import RetryPolicy

RETRIED: dict[str, set[str]] = {
    "5xx": {"connect_failure", "reset", "refused_stream", "per_try_timeout"},
    "gateway-error": {"connect_failure", "reset", "refused_stream", "per_try_timeout"},
    "reset": {"connect_failure", "reset", "refused_stream", "per_try_timeout"},
    "reset-before-request": {"connect_failure"},
    "connect-failure": {"connect_failure"},
    "refused-stream": {"refused_stream"},
    "retriable-4xx": set(),
}
FAILURES: tuple[Failure, ...] = ("connect_failure", "reset", "refused_stream",
                                 "per_try_timeout", "overflow")


@pytest.mark.parametrize("condition", sorted(RETRIED))
@pytest.mark.parametrize("failure", FAILURES)
def test_retry_on_condition(condition: str, failure: Failure) -> None:
    policy = RetryPolicy(retry_on=frozenset({condition}))
    assert failure_is_retriable(policy, failure) is (failure in RETRIED[condition])


def test_the_budget_bounds_retries() -> None:
    state = RetryState(RetryPolicy(retry_on=frozenset({"reset"}), num_retries=1))
    assert state.should_retry_failure("per_try_timeout")
    state.retries_done = 1
    assert not state.should_retry_failure("per_try_timeout")
    assert not RetryState(None).should_retry_failure("reset")


class _Budget:
    """A retry budget with `slots` slots (the cluster's max_retries)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.asked = 0

    def acquire(self) -> bool:
        self.asked += 1
        if self.slots:
            self.slots -= 1
            return True
        return False


def _state(retry_on: str = "5xx", retries: int = 1) -> RetryState:
    return RetryState(RetryPolicy(retry_on=frozenset({retry_on}), num_retries=retries,
                                  backoff_base=0.025, backoff_max=0.25))


def test_a_retriable_response_is_retried_after_a_backoff_within_the_ceiling() -> None:
    decision = _state().decide(Responded(503), replayable=True, budget=_Budget(1))
    assert isinstance(decision, Retry) and 0 <= decision.backoff < 0.025


def test_a_response_goes_downstream_when_no_retry_follows() -> None:
    assert RetryState(None).decide(Responded(503), replayable=True, budget=_Budget(1)) == Done()
    assert _state().decide(Responded(200), replayable=True, budget=_Budget(1)) == Done()
    state = _state()
    state.retries_done = 1  # num_retries used up: Envoy's NoRetryLimitExceeded
    assert state.decide(Responded(503), replayable=True, budget=_Budget(1)) == Done(("URX",))
    # max_retries refused the retry: Envoy's RetryStatus::NoOverflow
    assert _state().decide(Responded(503), replayable=True, budget=_Budget(0)) == Done(("UO",))


def test_grpc_status_conditions() -> None:
    state = _state("unavailable")
    assert isinstance(state.decide(Responded(200, 14), replayable=True, budget=_Budget(1)),
                      Retry)
    assert _state("unavailable").decide(Responded(200, 13), replayable=True,
                                        budget=_Budget(1)) == Done()


def test_a_failure_is_answered_with_why_no_retry_follows_then_its_own_flag() -> None:
    failed = Failed("reset", "UR")
    assert isinstance(_state().decide(failed, replayable=True, budget=_Budget(1)), Retry)
    assert _state().decide(failed, replayable=True, budget=_Budget(0)) == Answer(("UO", "UR"))
    exhausted = _state()
    exhausted.retries_done = 1
    assert exhausted.decide(failed, replayable=True, budget=_Budget(1)) == Answer(("URX", "UR"))
    assert RetryState(None).decide(failed, replayable=True, budget=_Budget(1)) == Answer(("UR",))
    # A circuit breaker's overflow is never retried (retrying would defeat it).
    assert _state().decide(Failed("overflow", "UO"), replayable=True,
                           budget=_Budget(1)) == Answer(("UO",))


def test_a_request_that_cannot_be_replayed_is_not_retried_and_the_budget_not_asked() -> None:
    budget = _Budget(1)
    decision = _state().decide(Failed("reset", "UR"), replayable=False, budget=budget)
    assert decision == Answer(("URX", "UR")) and budget.asked == 0


def test_each_retry_doubles_the_backoff_ceiling_up_to_the_maximum() -> None:
    state = _state(retries=10)
    ceilings = []
    for _ in range(6):
        ceilings.append(min(0.025 * 2 ** state.retries_done, 0.25))
        decision = state.decide(Responded(503), replayable=True, budget=_Budget(1))
        assert isinstance(decision, Retry) and decision.backoff < ceilings[-1]
    assert ceilings == [0.025, 0.05, 0.1, 0.2, 0.25, 0.25]


def test_retriable_headers_retry_a_response_carrying_a_matched_header() -> None:
    """retry_on retriable-headers with RetryPolicy.retriable_headers (router.md): a response
    is retried when one of its headers (or :status) matches, whatever its status."""
    from proxy.codec.headers import Headers, ResponseHead
    from proxy.http.replay import RetryBudget
    from proxy.http.retry import retriable_header
    from proxy.model.matchers import HeaderMatcher

    policy = RetryPolicy(retry_on=frozenset({"retriable-headers"}), num_retries=1,
                         retriable_headers=(HeaderMatcher("x-reset", present=True),
                                            HeaderMatcher(":status", int_range=(418, 419))))
    marked = ResponseHead(503, Headers([("x-reset", "true")]))
    assert retriable_header(policy, marked)
    assert retriable_header(policy, ResponseHead(418))
    assert not retriable_header(policy, ResponseHead(503))
    assert not retriable_header(None, marked)
    state = RetryState(policy)
    assert isinstance(state.after_response(Responded(503, None, True), replayable=True,
                                           budget=RetryBudget(None)), Retry)
    assert state.after_response(Responded(503), replayable=True,
                                budget=RetryBudget(None)) == Done()
    without = RetryState(RetryPolicy(retry_on=frozenset({"reset"}), num_retries=1))
    assert without.after_response(Responded(503, None, True), replayable=True,
                                  budget=RetryBudget(None)) == Done()
