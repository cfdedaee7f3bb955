"""Raw HTTP/2 for conformance cases: frame and HPACK builders that write whatever they are told
(odd lengths, wrong streams, uppercase names), a tolerant frame parser, and a client that does
the h2spec handshake, sends a case and reduces what comes back to one outcome.

Deliberately not h2: h2 validates what it sends and raises on odd input, and these cases are
odd input. Server header blocks are decoded with hpack (they are well-formed; if not, the
status is recorded as None).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types and flags, RFC 9113 section 6.
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY = range(8)
WINDOW_UPDATE, CONTINUATION = 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20

# Error codes, RFC 9113 section 7.
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = 0x5, 0x6, 0x7, 0x8, 0x9
ENHANCE_YOUR_CALM = 0xB

# Settings identifiers, RFC 9113 section 6.5.2.
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS = 0x1, 0x2, 0x3
INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x4, 0x5, 0x6

Outcome = tuple[object, ...]


# --- building -----------------------------------------------------------------------------------

def frame(kind: int, flags: int, stream: int, payload: bytes = b"",
          length: int | None = None) -> bytes:
    """One frame; `length` overrides the header's length field (the payload is sent as is)."""
    size = len(payload) if length is None else length
    return (size.to_bytes(3, "big") + bytes([kind, flags])
            + (stream & 0xFFFFFFFF).to_bytes(4, "big") + payload)


def settings(*pairs: tuple[int, int], flags: int = 0, stream: int = 0) -> bytes:
    payload = b"".join(ident.to_bytes(2, "big") + value.to_bytes(4, "big")
                       for ident, value in pairs)
    return frame(SETTINGS, flags, stream, payload)


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, increment.to_bytes(4, "big"))


def ping(payload: bytes = b"pointsmn", *, flags: int = 0, stream: int = 0) -> bytes:
    return frame(PING, flags, stream, payload)


def rst_stream(stream: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream, code.to_bytes(4, "big"))


def priority(stream: int, depends_on: int, weight: int = 15) -> bytes:
    return frame(PRIORITY, 0, stream, depends_on.to_bytes(4, "big") + bytes([weight]))


def hpack_int(value: int, prefix_bits: int, first_byte: int = 0) -> bytes:
    """RFC 7541 section 5.1 integer with an N-bit prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: str, value: str) -> bytes:
    """Literal header field without indexing, new name, no Huffman (RFC 7541 section 6.2.2):
    the bytes go on the wire exactly as given, uppercase and all."""
    raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
    return (b"\x00" + hpack_int(len(raw_name), 7) + raw_name
            + hpack_int(len(raw_value), 7) + raw_value)


def header_block(fields: Iterable[tuple[str, str]]) -> bytes:
    return b"".join(hpack_literal(name, value) for name, value in fields)


GET = ((":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "a"))
POST = ((":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", "a"))


def headers(stream: int, fields: Iterable[tuple[str, str]] = GET, *, end_stream: bool = True,
            end_headers: bool = True, block: bytes | None = None) -> bytes:
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream, header_block(fields) if block is None else block)


def data(stream: int, payload: bytes, *, end_stream: bool = True) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream, payload)


# --- parsing ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    flags: int
    stream: int
    payload: bytes


@dataclass(slots=True)
class FrameReader:
    """Splits received bytes into frames; never validates beyond the 9-byte header."""

    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes) -> list[Frame]:
        self.buffer += chunk
        frames = []
        while len(self.buffer) >= 9:
            length = int.from_bytes(self.buffer[:3], "big")
            if len(self.buffer) < 9 + length:
                break
            kind, flags = self.buffer[3], self.buffer[4]
            stream = int.from_bytes(self.buffer[5:9], "big") & 0x7FFFFFFF
            frames.append(Frame(kind, flags, stream, bytes(self.buffer[9:9 + length])))
            del self.buffer[:9 + length]
        return frames


def _header_fragment(item: Frame) -> bytes:
    """A HEADERS payload without padding and priority fields (RFC 9113 section 6.2)."""
    payload = item.payload
    pad = 0
    if item.flags & PADDED:
        pad, payload = payload[0], payload[1:]
    if item.flags & PRIORITY_FLAG:
        payload = payload[5:]
    return payload[:len(payload) - pad]


@dataclass(slots=True)
class ReplyReader:
    """Turns the server's frames into decisive events, in arrival order:
    ("GOAWAY", code), ("RST_STREAM", stream, code), ("RESPONSE", status), plus the streams
    whose reply ended. Keeps one HPACK decoder for the connection, as it must."""

    decoder: hpack.Decoder = field(default_factory=hpack.Decoder)
    events: list[Outcome] = field(default_factory=list)
    ended: set[int] = field(default_factory=set)
    settings_seen: bool = False
    settings_acked: bool = False
    server_settings: dict[int, int] = field(default_factory=dict)  # as advertised
    connection_window_increments: int = 0  # WINDOW_UPDATEs on stream 0 so far
    _block: bytearray = field(default_factory=bytearray)
    _block_stream: int = 0
    _block_ends_stream: bool = False

    def take(self, item: Frame) -> None:
        if item.kind == SETTINGS:
            if item.flags & ACK:
                self.settings_acked = True
            else:
                self.settings_seen = True
                payload = item.payload
                for at in range(0, len(payload) - len(payload) % 6, 6):
                    ident = int.from_bytes(payload[at:at + 2], "big")
                    self.server_settings[ident] = int.from_bytes(payload[at + 2:at + 6], "big")
        elif item.kind == WINDOW_UPDATE and item.stream == 0:
            self.connection_window_increments += int.from_bytes(item.payload[:4], "big")
        elif item.kind == GOAWAY:
            self.events.append(("GOAWAY", int.from_bytes(item.payload[4:8], "big")))
        elif item.kind == RST_STREAM:
            self.events.append(("RST_STREAM", item.stream,
                                int.from_bytes(item.payload[:4], "big")))
            self.ended.add(item.stream)
        elif item.kind == DATA and item.flags & END_STREAM:
            self.ended.add(item.stream)
        elif item.kind == HEADERS:
            self._block = bytearray(_header_fragment(item))
            self._block_stream = item.stream
            self._block_ends_stream = bool(item.flags & END_STREAM)
            if item.flags & END_HEADERS:
                self._header_block_done()
        elif item.kind == CONTINUATION:
            self._block += item.payload
            if item.flags & END_HEADERS:
                self._header_block_done()

    def _header_block_done(self) -> None:
        if self._block_ends_stream:
            self.ended.add(self._block_stream)
        try:
            fields = dict(self.decoder.decode(bytes(self._block), raw=True))
        except hpack.HPACKError:
            self.events.append(("RESPONSE", None))
            return
        status = fields.get(b":status")
        if status is not None and int(status) >= 200:  # 1xx are not the reply
            self.events.append(("RESPONSE", int(status)))


# --- one exchange -------------------------------------------------------------------------------

class RawClient:
    """One h2c connection: preface and SETTINGS, the server's SETTINGS acknowledged (the h2spec
    handshake), then raw bytes; reads until the proxy answers decisively, closes, or time runs
    out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._frames = FrameReader()
        self.replies = ReplyReader()
        self.closed = False

    @classmethod
    async def connect(cls, port: int, wait: float) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        writer.write(PREFACE + settings())
        await client._read_until(lambda: client.replies.settings_seen
                                 and client.replies.settings_acked, wait)
        if not client.replies.settings_seen:
            raise AssertionError("no SETTINGS from the server")
        writer.write(settings(flags=ACK))
        return client

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def wait_for_reply_end(self, stream: int, wait: float) -> None:
        await self._read_until(lambda: stream in self.replies.ended, wait)
        if stream not in self.replies.ended:
            raise AssertionError(f"no complete reply on stream {stream}")
        self.replies.events.clear()

    async def outcome(self, wait: float) -> Outcome:
        """The first decisive event, else ("CLOSED",) or ("NOTHING",)."""
        await self._read_until(lambda: bool(self.replies.events), wait)
        if self.replies.events:
            return self.replies.events[0]
        return ("CLOSED",) if self.closed else ("NOTHING",)

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except ConnectionError:
            pass

    async def _read_until(self, done: Callable[[], bool], wait: float) -> None:
        deadline = time.monotonic() + wait
        while not done() and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                chunk = await asyncio.wait_for(self._reader.read(65536), remaining)
            except TimeoutError:
                return
            except ConnectionError:
                chunk = b""
            if not chunk:
                self.closed = True
                return
            for item in self._frames.feed(chunk):
                self.replies.take(item)
