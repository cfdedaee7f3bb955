"""grpc-timeout values read and written (gRPC over HTTP/2 spec: at most 8 digits and a unit;
Envoy writes milliseconds, moving up a unit while the value is too long)."""

from __future__ import annotations

import pytest

from proxy.http.retry import grpc_timeout_text, parse_grpc_timeout


@pytest.mark.parametrize("text,seconds", [
    ("2S", 2.0), ("1500m", 1.5), ("1M", 60.0), ("1H", 3600.0), ("250u", 0.00025),
    ("0m", 0.0), ("99999999S", 99_999_999.0)])
def test_parse(text: str, seconds: float) -> None:
    assert parse_grpc_timeout(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "5", "S", "123456789S", "1.5S", "-1S", "10x"])
def test_parse_refuses_what_the_spec_does_not_allow(text: str | None) -> None:
    assert parse_grpc_timeout(text) is None


@pytest.mark.parametrize("seconds,text", [
    (1.0, "1000m"), (0.5, "500m"), (99_999.999, "99999999m"), (100_000.0, "100000S"),
    (99_999_999.0, "99999999S"), (99_999_999.0 * 60, "99999999M"), (1e13, "99999999H")])
def test_written_in_milliseconds_until_too_long(seconds: float, text: str) -> None:
    assert grpc_timeout_text(seconds) == text
    assert parse_grpc_timeout(text) is not None
