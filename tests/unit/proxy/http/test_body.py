"""BodyChannel watermarks: the producer is paused above the limit and resumed below half."""

from __future__ import annotations

import pytest

from proxy.codec.headers import Headers
from proxy.http.body import BodyChannel, StreamResetError


async def test_pressure_and_flow_control_credit() -> None:
    pressure: list[bool] = []
    credit: list[int] = []
    channel = BodyChannel(high_watermark=10, on_pressure=pressure.append,
                          on_consumed=credit.append)
    channel.push(b"123456", 6)
    assert pressure == []
    channel.push(b"789012", 6)  # 12 > 10: stop reading
    assert pressure == [True]
    assert await channel.read() == b"123456"
    assert pressure == [True]  # 6 bytes left: not yet under half the limit
    assert credit == [6]
    channel.end()
    assert await channel.read() == b"789012"
    assert pressure == [True, False]  # drained: reading resumes
    assert await channel.read() is None and channel.exhausted


async def test_reset_wakes_the_reader() -> None:
    channel = BodyChannel()
    channel.abort()
    with pytest.raises(StreamResetError):
        await channel.read()


def test_discard_gives_back_the_credit_of_unread_chunks() -> None:
    """A stream that ends with request DATA unread returns its window (RFC 9113 6.9.1: the
    connection window is shared by every stream)."""
    credit: list[int] = []
    channel = BodyChannel(on_consumed=credit.append)
    channel.push(b"abc", 3)
    channel.push(b"defgh", 9)  # padding counts against the window too
    channel.discard()
    assert credit == [12]
    assert channel.reset


def test_data_after_the_end_is_dropped_but_its_credit_returned() -> None:
    credit: list[int] = []
    channel = BodyChannel(on_consumed=credit.append)
    channel.abort()
    channel.push(b"late", 4)
    assert credit == [4]


async def test_the_transform_sees_each_chunk_and_the_end() -> None:
    calls: list[tuple[bytes, bool]] = []

    def upper(data: bytes, end_stream: bool) -> bytes:
        calls.append((data, end_stream))
        return data.upper()

    channel = BodyChannel()
    channel.transform = upper
    channel.push(b"ab")
    channel.push(b"cd")
    channel.end()
    assert await channel.read() == b"AB"
    assert channel.read_nowait() == b"CD"
    assert channel.exhausted and await channel.read() is None
    assert calls == [(b"ab", False), (b"cd", True)]


async def test_an_end_after_the_last_chunk_gets_a_last_call() -> None:
    calls: list[tuple[bytes, bool]] = []

    def append(data: bytes, end_stream: bool) -> bytes:
        calls.append((data, end_stream))
        return data + b"!" if end_stream else data

    channel = BodyChannel()
    channel.transform = append
    channel.push(b"ab")
    assert await channel.read() == b"ab"
    channel.end()
    assert not channel.exhausted  # the transform has not been told of the end yet
    assert await channel.read() == b"!"
    assert channel.exhausted and await channel.read() is None
    assert calls == [(b"ab", False), (b"", True)]


async def test_no_body_or_trailers_mean_no_end_call() -> None:
    calls: list[tuple[bytes, bool]] = []
    headers_only = BodyChannel()
    headers_only.transform = lambda data, end: calls.append((data, end)) or data  # type: ignore[func-returns-value]
    headers_only.end()
    assert headers_only.exhausted and await headers_only.read() is None
    with_trailers = BodyChannel()
    with_trailers.transform = lambda data, end: calls.append((data, end)) or data  # type: ignore[func-returns-value]
    with_trailers.push(b"x")
    with_trailers.end(Headers([("grpc-status", "0")]))
    assert await with_trailers.read() == b"x"
    assert await with_trailers.read() is None
    assert calls == [(b"x", False)]
