"""Which attempt failures each retry_on condition retries (Envoy's
RetryStateImpl::wouldRetryFromReset; the same table is checked against the Envoy binary in
tests/conformance/http/test_retry_on_vs_envoy.py for connect failures and per-try timeouts)."""

from __future__ import annotations

import pytest

from proxy.http.retry import Failure, RetryState, failure_is_retriable
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
