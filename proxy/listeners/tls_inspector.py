"""`envoy.filters.listener.tls_inspector`, sans-I/O: read SNI and ALPN from a peeked ClientHello.

Fed the bytes peeked so far (never consumed); answers NeedMore, NotTls, TooLarge or
ClientHello.
Formats: RFC 8446 section 5.1 (record layer) and 4.1.2 (ClientHello), RFC 6066 section 3
(server_name), RFC 7301 section 3.1 (ALPN). A ClientHello split over several handshake records
is reassembled. Envoy's default max_client_hello_size is 16 KiB (tls_inspector.proto).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_CLIENT_HELLO_SIZE = 16 * 1024
_HANDSHAKE_RECORD = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0
_EXT_ALPN = 16


@dataclass(frozen=True)
class NeedMore:
    """Not enough bytes yet."""


@dataclass(frozen=True)
class NotTls:
    """The first bytes are not a TLS ClientHello: the connection is `raw_buffer`."""


@dataclass(frozen=True)
class TooLarge:
    """A ClientHello longer than max_client_hello_size: Envoy closes the connection
    (stat `client_hello_too_large`)."""


@dataclass(frozen=True)
class ClientHello:
    server_name: str
    application_protocols: tuple[str, ...]


Verdict = NeedMore | NotTls | TooLarge | ClientHello


class _Truncated(Exception):
    pass


def inspect(data: bytes, max_size: int = MAX_CLIENT_HELLO_SIZE) -> Verdict:
    if not data:
        return NeedMore()
    if data[0] != _HANDSHAKE_RECORD:
        return NotTls()
    handshake = _reassemble(data, max_size)
    if handshake is None:
        return NeedMore()
    if isinstance(handshake, NotTls | TooLarge):
        return handshake
    try:
        return _parse_client_hello(handshake)
    except (_Truncated, struct.error, UnicodeDecodeError):
        return NotTls()


def _reassemble(data: bytes, max_size: int) -> bytes | NotTls | TooLarge | None:
    """The whole handshake message from consecutive records, or None when incomplete."""
    payload = b""
    offset = 0
    while True:
        if len(data) < offset + 5:
            return None
        content_type, major, _minor, length = struct.unpack_from("!BBBH", data, offset)
        if content_type != _HANDSHAKE_RECORD or major != 3:
            return NotTls()
        if len(data) < offset + 5 + length:
            return None
        payload += data[offset + 5: offset + 5 + length]
        offset += 5 + length
        if len(payload) >= 4:
            if payload[0] != _CLIENT_HELLO:
                return NotTls()
            needed = 4 + int.from_bytes(payload[1:4], "big")
            if needed > max_size:
                return TooLarge()
            if len(payload) >= needed:
                return payload[:needed]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def take(self, size: int) -> bytes:
        if self.offset + size > len(self.data):
            raise _Truncated
        chunk = self.data[self.offset: self.offset + size]
        self.offset += size
        return chunk

    def integer(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def vector(self, length_size: int) -> bytes:
        return self.take(self.integer(length_size))

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset


def _parse_client_hello(handshake: bytes) -> ClientHello:
    reader = _Reader(handshake[4:])
    reader.take(2 + 32)  # legacy_version, random
    reader.vector(1)  # legacy_session_id
    reader.vector(2)  # cipher_suites
    reader.vector(1)  # legacy_compression_methods
    server_name = ""
    protocols: tuple[str, ...] = ()
    if reader.remaining == 0:
        return ClientHello(server_name, protocols)  # no extensions (old clients)
    extensions = _Reader(reader.vector(2))
    while extensions.remaining:
        kind = extensions.integer(2)
        body = extensions.vector(2)
        if kind == _EXT_SERVER_NAME:
            server_name = _server_name(body)
        elif kind == _EXT_ALPN:
            protocols = _alpn(body)
    return ClientHello(server_name, protocols)


def _server_name(body: bytes) -> str:
    names = _Reader(_Reader(body).vector(2))
    while names.remaining:
        name_type = names.integer(1)
        name = names.vector(2)
        if name_type == 0:  # host_name
            return name.decode("ascii").lower()
    return ""


def _alpn(body: bytes) -> tuple[str, ...]:
    protocols = _Reader(_Reader(body).vector(2))
    found = []
    while protocols.remaining:
        found.append(protocols.vector(1).decode("ascii", errors="replace"))
    return tuple(found)
