"""QUIC listeners (HTTP/3 downstream): one UDP socket, datagrams routed to QUIC sessions by
connection ID, each session's HTTP/3 connection served by its chain's HTTP connection manager.

Envoy's HTTP/3 downstream (docs intro/arch_overview/http/http3) on aioquic:
- `QuicDispatcher` (asyncio.DatagramProtocol) reads each datagram's header (aioquic's
  `pull_quic_header`; RFC 9000 17) and routes it by destination connection ID to its session.
  A datagram that does not parse, belongs to no session and is not a full-size Initial
  (RFC 9000 14.1: at least 1200 bytes), or arrives when the listener is full is dropped and
  counted (`listener.<name>.udp.downstream_rx_datagram_dropped`), never raised. An unknown
  version gets Version Negotiation (RFC 9000 6), unless the datagram is one itself.
- Address validation: while more than `RETRY_THRESHOLD` handshakes are in progress (a
  flood of Initials from spoofed addresses), a new client must first echo a Retry token
  (RFC 9000 8.1.2, aioquic's QuicRetryTokenHandler); quiche in Envoy likewise validates
  addresses only under load, not on every connection.
- `QuicActiveListener` is what the listener manager runs for a Listener with `quic`: the
  same generations (a config update serves new connections with the new chains while the
  old ones drain) and the same per-listener stats as TCP listeners (`downstream_cx_total`,
  `downstream_cx_active`, `downstream_cx_destroy`, `downstream_cx_overflow`,
  `no_filter_chain_match`). Each session is a task of its generation, so draining and
  closing work as for TCP connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.packet import (
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.retry import QuicRetryTokenHandler
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from proxy.codec.http3 import ALPN, FlowControlledQuicConnection
from proxy.context import ServerContext
from proxy.listeners.matching import ConnectionFacts, select_filter_chain
from proxy.listeners.quic_session import QuicSession
from proxy.listeners.shared import bound_address, finish_connections
from proxy.listeners.udp import bind_udp_socket
from proxy.model.listener import FilterChain, Listener
from proxy.model.quic import QuicListenerOptions
from proxy.stats import Stats
from proxy.tasks import TaskSet, log_failure

log = logging.getLogger(__name__)

CID_LENGTH = 8  # aioquic's default host connection ID length
MIN_INITIAL_SIZE = 1200  # RFC 9000 14.1
RETRY_THRESHOLD = 64  # handshakes in progress beyond which new clients must Retry first
_SUPPORTED_VERSIONS = QuicConfiguration().supported_versions


def quic_configuration(chain: FilterChain, options: QuicListenerOptions) -> QuicConfiguration:
    """aioquic's server configuration for one chain: its certificate (the QUIC transport
    socket's DownstreamTlsContext) and the listener's quic_options."""
    assert chain.tls is not None  # proxy.model.quic.check_quic_listener
    certificate = chain.tls.certificate
    assert certificate is not None  # proxy.model.quic.translate_quic_transport
    certificates = x509.load_pem_x509_certificates(certificate.certificate_chain)
    configuration = QuicConfiguration(
        is_client=False, alpn_protocols=list(ALPN), connection_id_length=CID_LENGTH,
        idle_timeout=options.idle_timeout, max_data=options.initial_connection_window_size,
        max_stream_data=options.initial_stream_window_size)
    configuration.certificate = certificates[0]
    configuration.certificate_chain = certificates[1:]
    configuration.private_key = load_pem_private_key(certificate.private_key, None)
    return configuration


@dataclass(eq=False)
class _Counters:
    dropped: Any
    overflow: Any
    retries: Any


class QuicDispatcher(asyncio.DatagramProtocol):
    """Routes a QUIC listener's datagrams to sessions by destination connection ID."""

    def __init__(self, owner: QuicActiveListener) -> None:
        self.owner = owner
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: dict[bytes, QuicSession] = {}  # every live CID of every session
        self.retry = QuicRetryTokenHandler()
        scope = f"listener.{owner.current.listener.stats_name}."
        stats: Stats = owner.context.stats
        self.counters = _Counters(stats.counter(scope + "udp.downstream_rx_datagram_dropped"),
                                  stats.counter(scope + "downstream_cx_overflow"),
                                  stats.counter(scope + "quic.retry_sent"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        log.debug("QUIC listener %s: %s", self.owner.current.listener.name, exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            self.counters.dropped.inc()
            return
        session = self.sessions.get(header.destination_cid)
        try:
            if session is None:
                session = self._new_session(header, data, addr)
                if session is None:
                    return
            session.datagram(data, addr)
        except Exception as error:  # a bug must cost one connection, not the listener
            self._failed(session, error)

    def _failed(self, session: QuicSession | None, error: Exception) -> None:
        """Logged without a traceback: a flood of datagrams hitting one bug must not flood
        the log with them (the error names itself)."""
        self.counters.dropped.inc()
        log.warning("QUIC listener %s: %r failed: %r", self.owner.current.listener.name,
                    session, error)
        if session is not None:
            session.abort()

    def _new_session(self, header: Any, data: bytes, addr: Any) -> QuicSession | None:
        versions = _SUPPORTED_VERSIONS
        if header.packet_type != QuicPacketType.VERSION_NEGOTIATION \
                and header.version is not None and header.version not in versions:
            self._send(encode_quic_version_negotiation(
                source_cid=header.destination_cid, destination_cid=header.source_cid,
                supported_versions=versions), addr)
            return None
        if header.packet_type != QuicPacketType.INITIAL or len(data) < MIN_INITIAL_SIZE:
            self.counters.dropped.inc()
            return None
        if not self.owner.accepting():
            self.counters.overflow.inc()
            return None
        original_cid, retry_cid = header.destination_cid, None
        if self.owner.handshaking() >= RETRY_THRESHOLD:
            validated = self._validate_address(header, addr)
            if validated is None:
                return None
            original_cid, retry_cid = validated, header.destination_cid
        return self.owner.open_session(header, addr, original_cid, retry_cid)

    def _validate_address(self, header: Any, addr: Any) -> bytes | None:
        """RFC 9000 8.1.2: without a token, answer Retry; with one, the original destination
        CID it carries (None: invalid, the datagram is dropped)."""
        now = self.loop.time()
        if not header.token:
            source_cid = os.urandom(CID_LENGTH)
            self.counters.retries.inc()
            self._send(encode_quic_retry(
                version=header.version, source_cid=source_cid,
                destination_cid=header.source_cid,
                original_destination_cid=header.destination_cid,
                retry_token=self.retry.create_token(
                    address=addr, original_destination_connection_id=header.destination_cid,
                    retry_source_connection_id=source_cid, now=now)), addr)
            return None
        try:
            return self.retry.validate_token(address=addr, destination_cid=header.destination_cid,
                                             token=header.token, now=now)
        except ValueError:
            self.counters.dropped.inc()
            return None

    def _send(self, data: bytes, addr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    def retire(self, cid: bytes) -> None:
        self.sessions.pop(cid, None)

    def forget(self, session: QuicSession) -> None:
        for cid in session.cids:
            if self.sessions.get(cid) is session:
                del self.sessions[cid]


class QuicActiveListener:
    """A QUIC listener at run time; the listener manager drives it as an ActiveListener."""

    def __init__(self, listener: Listener, context: ServerContext, *, reuse_port: bool,
                 drain_timeout: float, generation: Any, sock: socket.socket | None = None
                 ) -> None:
        assert listener.quic is not None
        self.context = context
        self.reuse_port = reuse_port
        self.drain_timeout = drain_timeout
        self.current = generation
        self.sock = sock
        self.draining = TaskSet(f"listener {listener.name} drain")
        self.dispatcher: QuicDispatcher | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._configs: dict[int, QuicConfiguration] = {}
        self._next_id = 0
        self._stopped = False
        self._starting: asyncio.Task[None] | None = None
        self._handshaking: set[QuicSession] = set()

    def __repr__(self) -> str:
        count = len(self.current.connections)
        return f"QuicActiveListener({self.current.listener.name} {self.address}, active={count})"

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self.sock, self.current.listener.address)

    # --- the listener manager's calls ----------------------------------------------------------

    def start(self) -> None:
        if self.sock is None:
            self.sock = bind_udp_socket(self.current.listener, reuse_port=self.reuse_port)
        loop = asyncio.get_running_loop()
        self.dispatcher = QuicDispatcher(self)
        # create_datagram_endpoint is a coroutine and start() is not: an owned task (stop()
        # awaits it; a failure is logged) opens the endpoint on the bound socket.
        self._starting = loop.create_task(self._open_endpoint(loop),
                                          name=f"open {self.current.listener.name}")
        self._starting.add_done_callback(log_failure)

    async def _open_endpoint(self, loop: asyncio.AbstractEventLoop) -> None:
        dispatcher, sock = self.dispatcher, self.sock
        assert dispatcher is not None and sock is not None
        transport, _ = await loop.create_datagram_endpoint(lambda: dispatcher, sock=sock)
        self._transport = transport

    def swap(self, generation: Any) -> None:
        old = self.current
        self.current = generation
        self._configs.clear()
        self._drain(old)

    async def stop(self) -> None:
        self._stopped = True
        starting = self._starting
        if starting is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await starting
        self._drain(self.current)
        pending = list(self.draining)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
        elif self.sock is not None:
            self.sock.close()

    async def close_now(self) -> None:
        self.drain_timeout = 0
        await self.stop()

    def _drain(self, generation: Any) -> None:
        """As a TCP listener drains (proxy.listeners.manager): each HCM drains its HTTP/3
        connections (no new streams; closed once idle); after drain_timeout the rest end."""
        for network_filter in generation.filters.values():
            network_filter.start_draining()
        if generation.connections:
            self.draining.spawn(self._drain_generation(generation),
                                generation.listener.stats_name)

    async def _drain_generation(self, generation: Any) -> None:
        await finish_connections(generation.connections, self.drain_timeout)

    # --- the dispatcher's calls ----------------------------------------------------------------

    def accepting(self) -> bool:
        options = self.current.listener.quic
        return not self._stopped and not options.reject_new_connections \
            and len(self.current.connections) < options.max_connections

    def handshaking(self) -> int:
        """Connections still in their handshake (counted, not scanned: asked per Initial)."""
        return len(self._handshaking)

    def open_session(self, header: Any, addr: Any, original_cid: bytes,
                     retry_cid: bytes | None) -> QuicSession | None:
        generation = self.current
        listener: Listener = generation.listener
        options = listener.quic
        assert options is not None
        local = self.address
        chain = select_filter_chain(listener, ConnectionFacts(
            destination=local, source=(addr[0], addr[1]), transport_protocol="quic"))
        if chain is None:
            generation.stats.no_chain.inc()
            return None
        quic = FlowControlledQuicConnection(configuration=self._configuration(chain),
                                            original_destination_connection_id=original_cid,
                                            retry_source_connection_id=retry_cid)
        _limit_streams(quic, options.max_concurrent_streams)
        dispatcher = self.dispatcher
        assert dispatcher is not None
        self._next_id += 1
        connection_id = self._next_id
        session = QuicSession(
            quic, loop=dispatcher.loop, send=dispatcher._send,
            handshake_timeout=options.handshake_timeout,
            on_handshake=self._handshaking.discard,
            on_cid_issued=dispatcher.sessions.__setitem__,
            on_cid_retired=dispatcher.retire,
            start_http=lambda s: self._start_http(s, generation, chain, addr, connection_id))
        for cid in (header.destination_cid, quic.host_cid):
            session.cids.add(cid)
            dispatcher.sessions[cid] = session
        self._handshaking.add(session)
        generation.stats.cx_total.inc()
        generation.stats.cx_active.inc()
        task = dispatcher.loop.create_task(self._own(generation, session))
        generation.connections.add(task)
        task.add_done_callback(generation.connections.discard)
        return session

    def _configuration(self, chain: FilterChain) -> QuicConfiguration:
        found = self._configs.get(id(chain))
        if found is None:
            found = quic_configuration(chain, self.current.listener.quic)
            self._configs[id(chain)] = found
        return found

    def _start_http(self, session: QuicSession, generation: Any, chain: FilterChain,
                    addr: Any, connection_id: int) -> Any:
        hcm = generation.filters[id(chain)]
        return hcm.adopt_http3(session, remote=(addr[0], addr[1]), local=self.address,
                               connection_id=connection_id,
                               buffer_limit=generation.listener.per_connection_buffer_limit_bytes)

    async def _own(self, generation: Any, session: QuicSession) -> None:
        """The session's owner task: it ends with the session, or ends it when cancelled
        (drain timeout, listener closing)."""
        try:
            await asyncio.shield(session.closed)
        finally:
            session.abort()
            self._handshaking.discard(session)
            if self.dispatcher is not None:
                self.dispatcher.forget(session)
            generation.stats.cx_active.dec()
            generation.stats.cx_destroy.inc()
            if session.http is not None and session.http.tasks:  # cancelled by lost()
                await asyncio.gather(*session.http.tasks, return_exceptions=True)


def _limit_streams(quic: FlowControlledQuicConnection, count: int) -> None:
    """quic_options.quic_protocol_options.max_concurrent_streams: the initial_max_streams_bidi
    we advertise (RFC 9000 18.2). aioquic hard-codes 128 and grants one more stream as each
    ends, so the limit stays the number of streams open at once; it has no public setter."""
    limit = quic._local_max_streams_bidi
    limit.value = limit.sent = count
