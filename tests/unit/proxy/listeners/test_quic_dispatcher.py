"""QuicDispatcher without sockets: an aioquic client's real Initial datagrams fed in, what the
dispatcher sends (a fake transport) and asks of its listener (a fake owner) checked. Address
validation under load (Retry, RFC 9000 8.1.2), the connection bound, Version Negotiation and
drops of what cannot be a connection's."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from proxy.listeners import quic
from proxy.listeners.quic import QuicDispatcher
from proxy.stats import Stats

CLIENT = ("127.0.0.1", 40000)


@dataclass
class FakeOwner:
    """The listener side of the dispatcher: it records the sessions it was asked to open."""

    busy_handshakes: int = 0
    full: bool = False
    opened: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    context: Any = None
    current: Any = None

    def __post_init__(self) -> None:
        self.context = type("Context", (), {"stats": Stats()})()
        self.current = type("Generation", (), {"listener": type("L", (), {
            "stats_name": "test", "name": "test"})()})()

    def accepting(self) -> bool:
        return not self.full

    def handshaking(self) -> int:
        return self.busy_handshakes

    def open_session(self, header: Any, addr: Any, original_cid: bytes,
                     retry_cid: bytes | None) -> None:
        self.opened.append((original_cid, retry_cid))
        return None  # the test's dispatcher stops here: no session to feed


class FakeTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False


def _dispatcher(owner: FakeOwner) -> tuple[QuicDispatcher, FakeTransport]:
    dispatcher = QuicDispatcher(owner)  # type: ignore[arg-type]
    transport = FakeTransport()
    dispatcher.connection_made(transport)  # type: ignore[arg-type]
    return dispatcher, transport


def _client() -> tuple[QuicConnection, bytes]:
    client = QuicConnection(configuration=QuicConfiguration(is_client=True,
                                                            alpn_protocols=["h3"]))
    client.connect(("127.0.0.1", 443), now=0.0)
    initial = client.datagrams_to_send(now=0.0)[0][0]
    return client, initial


def _counter(owner: FakeOwner, name: str) -> int:
    return int(owner.context.stats.counter(f"listener.test.{name}").value)


async def test_a_new_connection_opens_without_retry_when_not_under_load() -> None:
    owner = FakeOwner()
    dispatcher, transport = _dispatcher(owner)
    _client_connection, initial = _client()
    dispatcher.datagram_received(initial, CLIENT)
    header = pull_quic_header(Buffer(data=initial), host_cid_length=8)
    assert owner.opened == [(header.destination_cid, None)]
    assert transport.sent == []


async def test_under_load_a_client_must_echo_a_retry_token_first() -> None:
    owner = FakeOwner(busy_handshakes=quic.RETRY_THRESHOLD)
    dispatcher, transport = _dispatcher(owner)
    client, initial = _client()
    original = pull_quic_header(Buffer(data=initial), host_cid_length=8).destination_cid
    dispatcher.datagram_received(initial, CLIENT)
    assert owner.opened == []  # no state for an unvalidated address
    (retry, addr), = transport.sent
    assert addr == CLIENT
    assert pull_quic_header(Buffer(data=retry), host_cid_length=8).packet_type \
        == QuicPacketType.RETRY
    client.receive_datagram(retry, ("127.0.0.1", 443), now=0.1)
    again = client.datagrams_to_send(now=0.1)[0][0]
    retried = pull_quic_header(Buffer(data=again), host_cid_length=8)
    assert retried.token
    dispatcher.datagram_received(again, CLIENT)
    assert owner.opened == [(original, retried.destination_cid)]
    assert _counter(owner, "quic.retry_sent") == 1
    # The same token from another address is not valid (RFC 9000 8.1.3): dropped.
    dispatcher.datagram_received(again, ("127.0.0.2", 40000))
    assert len(owner.opened) == 1
    assert _counter(owner, "udp.downstream_rx_datagram_dropped") == 1


async def test_a_full_listener_drops_new_connections_and_counts_them() -> None:
    owner = FakeOwner(full=True)
    dispatcher, transport = _dispatcher(owner)
    _client_connection, initial = _client()
    dispatcher.datagram_received(initial, CLIENT)
    assert owner.opened == [] and transport.sent == []
    assert _counter(owner, "downstream_cx_overflow") == 1


async def test_unknown_versions_get_version_negotiation_and_junk_is_dropped() -> None:
    owner = FakeOwner()
    dispatcher, transport = _dispatcher(owner)
    unknown = b"\xc0\x1a\x2a\x3a\x4a\x08" + b"d" * 8 + b"\x08" + b"s" * 8 + b"\x00" * 1200
    dispatcher.datagram_received(unknown, CLIENT)
    (negotiation, _addr), = transport.sent
    assert pull_quic_header(Buffer(data=negotiation), host_cid_length=8).version == 0
    _client_connection, initial = _client()
    for junk in (b"", b"\xff", initial[:600], b"\x40" + bytes(1300)):
        dispatcher.datagram_received(junk, CLIENT)
    assert owner.opened == []
    assert _counter(owner, "udp.downstream_rx_datagram_dropped") == 4
    await asyncio.sleep(0)


class _BrokenSession:
    aborted = False
    cids: set[bytes] = set()

    def datagram(self, data: bytes, addr: Any) -> None:
        raise RuntimeError("a bug in one connection")

    def abort(self) -> None:
        self.aborted = True


async def test_a_failing_connection_is_aborted_and_the_listener_goes_on(
        caplog: Any) -> None:
    broken = _BrokenSession()
    owner = FakeOwner()
    owner.open_session = lambda *args: broken  # type: ignore[method-assign]
    dispatcher, _transport = _dispatcher(owner)
    _client_connection, initial = _client()
    dispatcher.datagram_received(initial, CLIENT)  # raises nothing
    assert broken.aborted
    assert _counter(owner, "udp.downstream_rx_datagram_dropped") == 1
    assert "a bug in one connection" in caplog.text and "Traceback" not in caplog.text
