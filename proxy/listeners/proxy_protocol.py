"""PROXY protocol v1 and v2 (haproxy.org/download/2.9/doc/proxy-protocol.txt), sans-I/O.

`parse(data)` reads a header from peeked bytes and says how many bytes it occupies, so the
listener filter consumes exactly those and nothing of the payload. `build_v1` / `build_v2`
write a header (tcp_proxy's upstream PROXY protocol, and tests).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # section 2.1: the longest v1 line, CRLF included
_V2_LOCAL = 0x0
_V2_PROXY = 0x1
_AF_INET = 0x1
_AF_INET6 = 0x2
_STREAM = 0x1


@dataclass(frozen=True)
class NeedMore:
    pass


@dataclass(frozen=True)
class NotProxyProtocol:
    pass


@dataclass(frozen=True)
class Invalid:
    reason: str


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header. Addresses are None for LOCAL / UNKNOWN (keep the socket's own)."""

    length: int  # bytes to consume
    source: tuple[str, int] | None
    destination: tuple[str, int] | None
    version: int


Verdict = NeedMore | NotProxyProtocol | Invalid | ProxyHeader


def parse(data: bytes) -> Verdict:
    if _could_be(data, V2_SIGNATURE):
        return _parse_v2(data) if len(data) >= 16 else NeedMore()
    if _could_be(data, V1_PREFIX):
        return _parse_v1(data) if len(data) >= len(V1_PREFIX) else NeedMore()
    return NotProxyProtocol()


def header_length(data: bytes) -> int:
    """The v2 header's full length once its fixed part is in `data`, else 0."""
    if len(data) >= 16 and data[:12] == V2_SIGNATURE:
        return 16 + int(struct.unpack_from("!H", data, 14)[0])
    return 0


def _could_be(data: bytes, signature: bytes) -> bool:
    size = min(len(data), len(signature))
    return data[:size] == signature[:size]


def _parse_v1(data: bytes) -> Verdict:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        return NeedMore() if len(data) < V1_MAX_LENGTH else Invalid("v1 line too long")
    parts = data[:end].decode("ascii", errors="replace").split(" ")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return ProxyHeader(end + 2, None, None, 1)
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        return Invalid("malformed v1 header")
    try:
        source_ip = ipaddress.ip_address(parts[2])
        destination_ip = ipaddress.ip_address(parts[3])
        ports = int(parts[4]), int(parts[5])
    except ValueError:
        return Invalid("malformed v1 address")
    wanted = 4 if parts[1] == "TCP4" else 6
    if source_ip.version != wanted or destination_ip.version != wanted \
            or not all(0 <= port <= 65535 for port in ports):
        return Invalid("malformed v1 address")
    return ProxyHeader(end + 2, (str(source_ip), ports[0]), (str(destination_ip), ports[1]), 1)


def _parse_v2(data: bytes) -> Verdict:
    version_command, family_protocol, length = struct.unpack_from("!BBH", data, 12)
    if version_command >> 4 != 2:
        return Invalid("v2 version is not 2")
    total = 16 + length
    if len(data) < total:
        return NeedMore()
    command = version_command & 0x0F
    if command == _V2_LOCAL:
        return ProxyHeader(total, None, None, 2)
    if command != _V2_PROXY:
        return Invalid("v2 unknown command")
    family, transport = family_protocol >> 4, family_protocol & 0x0F
    body = data[16:total]
    if family == _AF_INET and transport == _STREAM and length >= 12:
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", body)
        return ProxyHeader(total, (socket.inet_ntop(socket.AF_INET, src), sport),
                           (socket.inet_ntop(socket.AF_INET, dst), dport), 2)
    if family == _AF_INET6 and transport == _STREAM and length >= 36:
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", body)
        return ProxyHeader(total, (socket.inet_ntop(socket.AF_INET6, src), sport),
                           (socket.inet_ntop(socket.AF_INET6, dst), dport), 2)
    # UNSPEC or non-TCP: the receiver must accept it and use the real addresses (2.2).
    return ProxyHeader(total, None, None, 2)


def build_v1(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    family = "TCP6" if ":" in source[0] else "TCP4"
    return (f"PROXY {family} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n"
            .encode("ascii"))


def build_v2(source: tuple[str, int], destination: tuple[str, int]) -> bytes:
    if ":" in source[0]:
        family, size, af = _AF_INET6, 36, socket.AF_INET6
    else:
        family, size, af = _AF_INET, 12, socket.AF_INET
    body = (socket.inet_pton(af, source[0]) + socket.inet_pton(af, destination[0])
            + struct.pack("!HH", source[1], destination[1]))
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | _V2_PROXY, (family << 4) | _STREAM,
                                      size) + body
