"""proxy.network.read_filters: reads go through the read filters before the terminal
filter's protocol; a stop closes without flushing and the terminal protocol sees an error."""

from __future__ import annotations

from typing import Any

from proxy.http.peer import PeerTls
from proxy.network.base import DownstreamConnection
from proxy.network.read_filters import ClosedByFilter, FilteredProtocol, protocol_for

NO_SOCKET: Any = None  # the adapter never touches the socket (unit tier: no sockets)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def connection_made(self, transport: Any) -> None:
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        self.events.append(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(exc)


class FakeTransport:
    def __init__(self, ssl_object: Any = None) -> None:
        self.ssl_object = ssl_object
        self.aborted = False
        self.protocol: Any = None

    def get_extra_info(self, name: str) -> Any:
        return self.ssl_object if name == "ssl_object" else None

    def abort(self) -> None:
        self.aborted = True
        self.protocol.connection_lost(None)  # as asyncio calls it soon after


class Gate:
    """Lets `budget` reads through, then stops (as network rbac on a CONTINUOUS deny)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.seen: list[tuple[int, bool]] = []

    def on_data(self, connection: DownstreamConnection, size: int, end_stream: bool) -> bool:
        self.seen.append((size, end_stream))
        self.budget -= 1
        if self.budget < 0:
            connection.termination_details = "rbac_access_denied_matched_policy[none]"
        return self.budget >= 0


class PeerCert:
    def getpeercert(self) -> dict[str, Any]:
        return {"subjectAltName": (("URI", "spiffe://td/ns/a/sa/b"),)}


def wired(gate: Gate, ssl_object: Any = None) -> tuple[FilteredProtocol, Recorder,
                                                       FakeTransport, DownstreamConnection]:
    connection = DownstreamConnection(sock=NO_SOCKET, remote_address=("1.1.1.1", 1),
                                      local_address=("2.2.2.2", 2), listener_name="l",
                                      connection_id=1, read_filters=(gate,))
    inner = Recorder()
    protocol = protocol_for(inner, connection)
    assert isinstance(protocol, FilteredProtocol)
    transport = FakeTransport(ssl_object)
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, inner, transport, connection


def test_reads_pass_until_a_filter_stops_then_nothing_more() -> None:
    gate = Gate(budget=1)
    protocol, inner, transport, connection = wired(gate)
    protocol.data_received(b"hello")
    protocol.data_received(b"denied")
    protocol.data_received(b"late")
    assert gate.seen == [(5, False), (6, False)]
    assert transport.aborted
    assert inner.events[:2] == ["made", b"hello"]
    assert isinstance(inner.events[2], ClosedByFilter)
    assert len(inner.events) == 3
    assert connection.withheld_bytes == 6
    assert connection.termination_details == "rbac_access_denied_matched_policy[none]"


def test_the_downstream_fin_is_a_read_too() -> None:
    gate = Gate(budget=0)
    protocol, inner, transport, _ = wired(gate)
    assert protocol.eof_received() is None
    assert gate.seen == [(0, True)]
    assert transport.aborted and "eof" not in inner.events


def test_the_tls_peer_is_known_before_the_first_read() -> None:
    _, _, _, connection = wired(Gate(budget=5), ssl_object=PeerCert())
    assert connection.peer == PeerTls(uri_sans=("spiffe://td/ns/a/sa/b",))


def test_no_read_filters_no_wrapper() -> None:
    connection = DownstreamConnection(sock=NO_SOCKET, remote_address=("1.1.1.1", 1),
                                      local_address=("2.2.2.2", 2), listener_name="l",
                                      connection_id=1)
    inner = Recorder()
    assert protocol_for(inner, connection) is inner
