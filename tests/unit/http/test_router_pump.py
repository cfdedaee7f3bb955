"""The request body pump ends with its attempt: an early end (a reset body, a closed socket)
is expected there; anything else is a bug and is logged, not lost."""

from __future__ import annotations

import asyncio

import pytest

from proxy.http.body import StreamResetError
from proxy.http.router import _log_pump_failure


@pytest.mark.parametrize("outcome", [None, asyncio.CancelledError(), StreamResetError("x"),
                                     ConnectionResetError("gone")])
def test_early_ends_are_not_errors(outcome: object,
                                   caplog: pytest.LogCaptureFixture) -> None:
    _log_pump_failure(outcome)
    assert not caplog.records


def test_anything_else_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    _log_pump_failure(KeyError("bug"))
    assert "request body pump failed" in caplog.text
    assert "KeyError" in caplog.text
