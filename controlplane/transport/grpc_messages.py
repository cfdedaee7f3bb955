"""gRPC's framing of messages on an HTTP/2 stream, sans-I/O (gRPC's PROTOCOL-HTTP2.md,
"Length-Prefixed-Message"): a 1-byte compressed flag, a 4-byte big-endian length, the
message. Plus the status trailers and the checks of a request's headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

# PROTOCOL-HTTP2.md: Status codes (grpc/doc/statuscodes.md).
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNIMPLEMENTED = 12
UNAVAILABLE = 14

_PREFIX = 5


class FramingError(Exception):
    """The peer broke the framing; `status` is the gRPC status to end the call with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class MessageReader:
    """Length-prefixed messages out of a stream's DATA, whatever the chunking.

    A compressed message (flag 1) is refused: we advertise no `grpc-accept-encoding`, so a
    client may not compress (PROTOCOL-HTTP2.md, "Compressed-Flag"; gRPC answers UNIMPLEMENTED
    to an encoding it does not support). A message longer than `limit` is RESOURCE_EXHAUSTED,
    as gRPC's `grpc.max_receive_message_length`.
    """

    limit: int
    _buffer: bytearray | None = None

    def feed(self, data: bytes) -> list[bytes]:
        if self._buffer:
            self._buffer += data
            view = memoryview(self._buffer)
        else:
            view = memoryview(data)
        messages: list[bytes] = []
        offset = 0
        end = len(view)
        while end - offset >= _PREFIX:
            flag = view[offset]
            length = int.from_bytes(view[offset + 1:offset + _PREFIX], "big")
            if flag != 0:
                raise FramingError(UNIMPLEMENTED if flag == 1 else INTERNAL,
                                   "compressed messages are not accepted" if flag == 1
                                   else f"bad compressed flag {flag}")
            if length > self.limit:
                raise FramingError(RESOURCE_EXHAUSTED,
                                   f"message of {length} bytes is over the limit of {self.limit}")
            if end - offset - _PREFIX < length:
                break
            start = offset + _PREFIX
            messages.append(bytes(view[start:start + length]))
            offset = start + length
        rest = view[offset:]
        self._buffer = bytearray(rest) if len(rest) else None
        view.release()
        return messages

    @property
    def partial(self) -> bool:
        """A message was begun and not finished (at end of stream: a truncated request)."""
        return bool(self._buffer)


def prefix(length: int) -> bytes:
    """The 5-byte prefix of an uncompressed message of `length` bytes."""
    return b"\x00" + length.to_bytes(4, "big")


def status_headers(status: int, message: str = "") -> list[tuple[bytes, bytes]]:
    """Trailers ending a call. grpc-message is percent-encoded (PROTOCOL-HTTP2.md: every byte
    outside 0x20-0x7E, and "%", as %XX of its UTF-8)."""
    headers = [(b"grpc-status", str(status).encode())]
    if message:
        encoded = quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~", encoding="utf-8")
        headers.append((b"grpc-message", encoded.encode("ascii")))
    return headers


def parse_timeout(value: str) -> float | None:
    """grpc-timeout (PROTOCOL-HTTP2.md: TimeoutValue of at most 8 digits and a unit H M S m u
    n) in seconds; None when malformed."""
    units = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    digits, unit = value[:-1], value[-1:]
    if not digits.isdigit() or len(digits) > 8 or unit not in units:
        return None
    return int(digits) * units[unit]
