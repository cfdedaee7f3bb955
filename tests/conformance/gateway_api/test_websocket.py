"""RFC 6455 as websocket.py has it (the WebSocket echo and client of the gateway runner), and
the echo's answers to frames: no sockets, bytes fed one at a time."""

from __future__ import annotations

import pytest

from tests.conformance.gateway_api import websocket
from tests.conformance.gateway_api.echo import websocket_answer
from tests.conformance.gateway_api.gateway_client import handshake_mismatch
from tests.conformance.gateway_api.websocket import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    TEXT,
    Frame,
    FrameReader,
    ProtocolError,
    encode,
)


def test_the_accept_value_is_the_rfc_example() -> None:
    """RFC 6455 1.3: key dGhlIHNhbXBsZSBub25jZQ== -> s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    assert websocket.accept_value("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_masked_text_frame_is_the_rfc_example() -> None:
    """RFC 6455 5.7: "Hello" masked with 37 fa 21 3d."""
    data = encode(Frame(TEXT, b"Hello"), bytes.fromhex("37fa213d"))
    assert data == bytes.fromhex("818537fa213d7f9f4d5158")
    assert FrameReader(expect_masked=True).feed(data) == [Frame(TEXT, b"Hello")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frames_come_back_whole_from_bytes_fed_one_at_a_time(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = encode(Frame(BINARY, payload), b"\x01\x02\x03\x04") + \
        encode(Frame(PING, b"p"), b"\x00\x00\x00\x00")
    reader = FrameReader(expect_masked=True)
    found: list[Frame] = []
    step = 1 if size < 1000 else 997
    for index in range(0, len(data), step):
        found += reader.feed(data[index:index + step])
    assert found == [Frame(BINARY, payload), Frame(PING, b"p")]


def test_a_server_refuses_unmasked_frames_and_a_client_masked_ones() -> None:
    with pytest.raises(ProtocolError):
        FrameReader(expect_masked=True).feed(encode(Frame(TEXT, b"x")))
    with pytest.raises(ProtocolError):
        FrameReader(expect_masked=False).feed(encode(Frame(TEXT, b"x"), b"abcd"))
    with pytest.raises(ProtocolError):  # a reserved opcode
        FrameReader(expect_masked=False).feed(b"\x83\x00")
    with pytest.raises(ProtocolError):  # a fragmented control frame
        FrameReader(expect_masked=False).feed(b"\x09\x00")


def test_the_echo_sends_data_back_answers_pings_and_echoes_a_close() -> None:
    """echo-basic's wsHandler is io.Copy(ws, ws)."""
    assert websocket_answer(Frame(TEXT, b"Websocket Support!")) == \
        Frame(TEXT, b"Websocket Support!")
    assert websocket_answer(Frame(BINARY, b"\x01\x02")) == Frame(BINARY, b"\x01\x02")
    assert websocket_answer(Frame(PING, b"x")) == Frame(PONG, b"x")
    assert websocket_answer(Frame(PONG, b"x")) is None
    assert websocket_answer(Frame(CLOSE, b"\x03\xe8")) == Frame(CLOSE, b"\x03\xe8")


def test_the_client_checks_the_handshake_answer() -> None:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    good = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert handshake_mismatch(good, key) is None
    assert handshake_mismatch(good.replace(b"101 Switching Protocols", b"200 OK"), key) == \
        "handshake answered 'HTTP/1.1 200 OK'"
    assert handshake_mismatch(good.replace(b"s3pP", b"xxxx"), key) is not None
    assert handshake_mismatch(good.replace(b"Upgrade: websocket", b"Upgrade: h2c"), key)
