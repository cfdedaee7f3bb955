"""gRPC's length-prefixed messages, sans-I/O (controlplane/transport/grpc_messages.py)."""

from __future__ import annotations

import pytest

from controlplane.transport.grpc_messages import (
    INTERNAL,
    RESOURCE_EXHAUSTED,
    UNIMPLEMENTED,
    FramingError,
    MessageReader,
    parse_timeout,
    prefix,
    status_headers,
)


def framed(*messages: bytes) -> bytes:
    return b"".join(prefix(len(message)) + message for message in messages)


def test_messages_come_out_whatever_the_chunking() -> None:
    wire = framed(b"first", b"", b"x" * 70_000, b"last")
    for size in (1, 2, 5, 7, 4096, len(wire)):
        reader = MessageReader(limit=1 << 20)
        got: list[bytes] = []
        for start in range(0, len(wire), size):
            got += reader.feed(wire[start:start + size])
        assert got == [b"first", b"", b"x" * 70_000, b"last"]
        assert not reader.partial


def test_an_unfinished_message_is_partial() -> None:
    reader = MessageReader(limit=100)
    assert reader.feed(framed(b"whole") + prefix(10) + b"abc") == [b"whole"]
    assert reader.partial
    assert reader.feed(b"defghij") == [b"abcdefghij"]
    assert not reader.partial


def test_a_compressed_message_is_refused_as_unimplemented() -> None:
    reader = MessageReader(limit=100)
    with pytest.raises(FramingError) as refused:
        reader.feed(b"\x01" + (3).to_bytes(4, "big") + b"abc")
    assert refused.value.status == UNIMPLEMENTED


def test_a_bad_flag_is_internal() -> None:
    with pytest.raises(FramingError) as refused:
        MessageReader(limit=100).feed(b"\x07" + (0).to_bytes(4, "big"))
    assert refused.value.status == INTERNAL


def test_a_message_over_the_limit_is_refused_before_it_is_buffered() -> None:
    reader = MessageReader(limit=1000)
    with pytest.raises(FramingError) as refused:
        reader.feed(prefix(1001))  # only the prefix: refused at once
    assert refused.value.status == RESOURCE_EXHAUSTED


def test_status_trailers_percent_encode_the_message() -> None:
    assert status_headers(0) == [(b"grpc-status", b"0")]
    assert status_headers(3, "bad 100% \u00e9\n") == [
        (b"grpc-status", b"3"), (b"grpc-message", b"bad 100%25 %C3%A9%0A")]


@pytest.mark.parametrize(("value", "seconds"), [
    ("1S", 1.0), ("250m", 0.25), ("2M", 120.0), ("1H", 3600.0), ("5u", 5e-6), ("7n", 7e-9),
    ("12345678S", 12345678.0)])
def test_grpc_timeout_units(value: str, seconds: float) -> None:
    assert parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "1", "1s", "-1S", "123456789S", "1.5S"])
def test_malformed_grpc_timeout(value: str) -> None:
    assert parse_timeout(value) is None
