"""Just enough protobuf wire format for the simulated sidecars (a script helper, not a test).

A simulated sidecar needs a response's version, nonce, type and resource count, and the names
its resources refer to; parsing a 1 MB response into messages costs 5-20 ms of the generator's
CPU (it shares the machine with the server under test). Here the top-level fields are walked
and each resource is left as bytes (protobuf encoding guide: tag = field << 3 | wire type;
wire types 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
"""

from __future__ import annotations

from collections.abc import Iterator


def _varint(buf: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field; others are skipped."""
    at, end = 0, len(buf)
    while at < end:
        tag, at = _varint(buf, at)
        kind = tag & 7
        if kind == 2:
            length, at = _varint(buf, at)
            yield tag >> 3, at, at + length
            at += length
        elif kind == 0:
            _, at = _varint(buf, at)
        elif kind == 1:
            at += 8
        elif kind == 5:
            at += 4
        else:
            raise ValueError(f"wire type {kind} not expected")


class Response:
    """A (Delta)DiscoveryResponse's top-level fields, resources as byte ranges."""

    __slots__ = ("buf", "nonce", "removed", "resources", "type_url", "version")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.version = self.nonce = self.type_url = ""
        self.resources: list[tuple[int, int]] = []
        self.removed: list[str] = []
        for number, start, end in fields(buf):
            if number == 1:
                self.version = buf[start:end].decode()
            elif number == 2:
                self.resources.append((start, end))
            elif number == 4:
                self.type_url = buf[start:end].decode()
            elif number == 5:
                self.nonce = buf[start:end].decode()
            elif number == 6:
                self.removed.append(buf[start:end].decode())

    def any_values(self) -> Iterator[bytes]:
        """SotW: each resource is an Any; its `value` is field 2."""
        for start, end in self.resources:
            yield _field(self.buf[start:end], 2)

    def delta_resources(self) -> Iterator[tuple[str, bytes]]:
        """Delta: each is a discovery Resource, `name` field 3, `resource` (an Any) field 2."""
        for start, end in self.resources:
            body = self.buf[start:end]
            yield _field(body, 3).decode(), _field(_field(body, 2), 2)


def _field(buf: bytes, wanted: int) -> bytes:
    for number, start, end in fields(buf):
        if number == wanted:
            return buf[start:end]
    return b""
