"""The little of RFC 6455 (WebSocket) the gateway suite's HTTPRouteBackendProtocolWebSocket test
uses, without sockets: the opening handshake's key and accept value (section 4), and data and
control frames encoded and decoded (section 5.2), a client's masked (5.3), a server's not.
echo.py's `/ws` echo (echo-basic's wsHandler) and the runner's client (WebSocketEcho) use it;
no WebSocket library is installed here. Payloads of up to 2^63 - 1 bytes; no extensions, no
fragmented messages (the test sends one frame per message).
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA  # 5.2 opcodes
_KNOWN = {0x0, TEXT, BINARY, CLOSE, PING, PONG}


class ProtocolError(ValueError):
    """A frame RFC 6455 does not allow (reserved bits or opcode, a bad control frame)."""


def new_key() -> str:
    """Sec-WebSocket-Key: 16 random bytes, base64 (4.1)."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (4.2.2 item 5.4)."""
    digest = hashlib.sha1((key + GUID).encode()).digest()  # the RFC's hash, not for secrecy
    return base64.b64encode(digest).decode()


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True


def encode(frame: Frame, mask: bytes | None = None) -> bytes:
    """One frame; `mask` (4 bytes) for a client's frame, None for a server's."""
    head = bytes([(0x80 if frame.fin else 0) | frame.opcode])
    size = len(frame.payload)
    flag = 0x80 if mask is not None else 0
    if size < 126:
        head += bytes([flag | size])
    elif size < 1 << 16:
        head += bytes([flag | 126]) + struct.pack("!H", size)
    else:
        head += bytes([flag | 127]) + struct.pack("!Q", size)
    if mask is None:
        return head + frame.payload
    return head + mask + _masked(frame.payload, mask)


def _masked(payload: bytes, mask: bytes) -> bytes:
    return bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


class FrameReader:
    """Bytes in (`feed`), whole frames out (`frames`), whatever the bytes' split.
    `expect_masked`: a server requires its client's frames masked (5.1)."""

    def __init__(self, *, expect_masked: bool) -> None:
        self.expect_masked = expect_masked
        self._buffer = b""

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames = []
        while (found := self._next()) is not None:
            frames.append(found)
        return frames

    def _next(self) -> Frame | None:
        data = self._buffer
        if len(data) < 2:
            return None
        first, second = data[0], data[1]
        opcode, masked, size, offset = first & 0x0F, bool(second & 0x80), second & 0x7F, 2
        if first & 0x70 or opcode not in _KNOWN:
            raise ProtocolError(f"reserved bits or opcode in {first:#04x}")
        if masked != self.expect_masked:
            raise ProtocolError(f"{'masked' if masked else 'unmasked'} frame")
        if opcode >= CLOSE and (size > 125 or not first & 0x80):
            raise ProtocolError("a control frame is short and not fragmented (5.5)")
        if size >= 126:
            width = 2 if size == 126 else 8
            if len(data) < offset + width:
                return None
            size = int.from_bytes(data[offset:offset + width], "big")
            offset += width
        mask = b""
        if masked:
            mask, offset = data[offset:offset + 4], offset + 4
        if len(data) < offset + size or len(mask) < 4 * masked:
            return None
        payload = data[offset:offset + size]
        self._buffer = data[offset + size:]
        return Frame(opcode, _masked(payload, mask) if masked else payload, bool(first & 0x80))
