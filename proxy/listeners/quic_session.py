"""One QUIC connection on a QUIC listener: aioquic's QuicConnection, driven.

The thin adapter aioquic's design asks for (it is sans-I/O: `receive_datagram(data, addr,
now)`, `datagrams_to_send(now)`, `get_timer()` / `handle_timer(now)`): feed it the
datagrams the listener routed here, hand its events to the HTTP/3 connection
(proxy.http.http3_server) once ALPN chose `h3`, send what it has to send and re-arm one
timer. The session is the HTTP/3 connection's `QuicLink`. It ends when aioquic says the
connection terminated (idle timeout, CONNECTION_CLOSE either way, handshake timeout) and
`closed` then resolves; the listener's task for the session owns that wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion

log = logging.getLogger(__name__)

Address = tuple[str, int]


class QuicSession:
    def __init__(self, quic: QuicConnection, *, loop: asyncio.AbstractEventLoop,
                 send: Callable[[bytes, Any], None], handshake_timeout: float,
                 on_handshake: Callable[[QuicSession], None],
                 on_cid_issued: Callable[[bytes, QuicSession], None],
                 on_cid_retired: Callable[[bytes], None],
                 start_http: Callable[[QuicSession], Any]) -> None:
        self.quic = quic
        self.loop = loop
        self._send = send
        self._on_cid_issued = on_cid_issued
        self._on_cid_retired = on_cid_retired
        self._start_http = start_http
        self._on_handshake = on_handshake
        self.http: Any = None  # proxy.http.http3_server.Http3ServerConnection after ALPN
        self.closed: asyncio.Future[None] = loop.create_future()
        self.cids: set[bytes] = set()
        self.handshake_done = False
        self._closing = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._transmit_scheduled = False
        self._handshake_timer: asyncio.TimerHandle | None = loop.call_later(
            handshake_timeout, self._handshake_timed_out)

    def __repr__(self) -> str:
        cid = self.quic.host_cid.hex()
        return f"QuicSession({cid} handshake_done={self.handshake_done} closing={self._closing})"

    # --- fed by the listener -------------------------------------------------------------------

    def datagram(self, data: bytes, addr: Any) -> None:
        self.quic.receive_datagram(data, addr, now=self.loop.time())
        self._process()
        if self.http is not None:
            self.http.acknowledged()
        self.transmit_soon()

    def transmit_soon(self) -> None:
        """Transmit once at the end of this loop iteration: the datagrams of a burst, and the
        responses the streams write meanwhile, share their packets (and their ACKs)."""
        if not self._transmit_scheduled:
            self._transmit_scheduled = True
            self.loop.call_soon(self._transmit_now)

    def _transmit_now(self) -> None:
        self._transmit_scheduled = False
        try:
            self.transmit()
        except Exception as error:  # one connection's bug ends that connection only
            log.warning("%r: transmit failed: %r", self, error)
            self.abort()

    def _process(self) -> None:
        quic = self.quic
        while (event := quic.next_event()) is not None:
            kind = type(event)
            if kind is events.ConnectionIdIssued:
                self.cids.add(event.connection_id)  # type: ignore[attr-defined]
                self._on_cid_issued(event.connection_id, self)  # type: ignore[attr-defined]
            elif kind is events.ConnectionIdRetired:
                self.cids.discard(event.connection_id)  # type: ignore[attr-defined]
                self._on_cid_retired(event.connection_id)  # type: ignore[attr-defined]
            elif kind is events.ProtocolNegotiated:
                if event.alpn_protocol == "h3":  # type: ignore[attr-defined]
                    self.http = self._start_http(self)
            elif kind is events.HandshakeCompleted:
                self._handshake_completed()
            elif kind is events.ConnectionTerminated:
                self._ended()
                return
            elif self.http is not None:
                self.http.receive_quic(event)

    def _handshake_completed(self) -> None:
        self.handshake_done = True
        self._on_handshake(self)
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        if self.http is None:  # RFC 9114 3.1: h3 is the only protocol we serve
            self.close(0x101, "h3 was not negotiated")  # H3_GENERAL_PROTOCOL_ERROR

    # --- QuicLink: what the HTTP/3 connection asks ---------------------------------------------

    @property
    def version_name(self) -> str:
        """The QUIC version as Envoy's http3.quic_version_* stats name it."""
        return "rfc_v2" if self.quic._version == QuicProtocolVersion.VERSION_2 else "rfc_v1"

    @property
    def closed_locally(self) -> bool:
        """We closed the connection or it idled out (Envoy: downstream_cx_destroy_local);
        otherwise the client closed it (downstream_cx_destroy_remote)."""
        event = self.quic._close_event
        return self._closing or (event is not None and event.reason_phrase == "Idle timeout")

    def transmit(self) -> None:
        if self.closed.done():
            return
        now = self.loop.time()
        for data, addr in self.quic.datagrams_to_send(now=now):
            self._send(data, addr)
        self._rearm(self.quic.get_timer())

    def is_closing(self) -> bool:
        return self._closing or self.closed.done()

    def close(self, code: int = 0x100, reason: str = "") -> None:
        """CONNECTION_CLOSE (H3_NO_ERROR unless told); aioquic keeps the closing state for
        three PTOs (RFC 9000 10.2), then reports the connection terminated."""
        if self._closing or self.closed.done():
            return
        self._closing = True
        self.quic.close(error_code=code, reason_phrase=reason)
        self.transmit()

    def abort(self) -> None:
        """Close and forget at once (the listener is closing, or the owner task ended)."""
        self.close()
        self._ended()

    def resume_reading(self) -> None:
        """Transport-shaped no-op: a QUIC connection never stops reading its datagrams."""

    # --- timers and the end --------------------------------------------------------------------

    def _rearm(self, when: float | None) -> None:
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.quic.handle_timer(now=self.loop.time())
            self._process()
            self.transmit()
        except Exception as error:  # one connection's bug ends that connection only
            log.warning("%r: timer failed: %r", self, error)
            self.abort()

    def _handshake_timed_out(self) -> None:
        """quic_options.crypto_handshake_timeout: a handshake not done by then ends."""
        self._handshake_timer = None
        if not self.handshake_done:
            log.debug("%r: handshake timed out", self)
            self.abort()

    def _ended(self) -> None:
        if self.closed.done():
            return
        for timer in (self._timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._handshake_timer = None
        if self.http is not None:
            self.http.lost()
        self.closed.set_result(None)
