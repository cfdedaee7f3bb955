"""udp_proxy's asyncio adapter: the sockets and the one idle timer around proxy.udp.sessions.

The UDP listener (proxy.listeners.udp) hands every datagram from a client to
`UdpProxyFilter.datagram_received`; the session table decides, this adapter does the I/O:
one connected, non-blocking upstream socket per session (Envoy: "the same local ephemeral
IP/port" for all of a session's datagrams), read with `loop.add_reader` in batches, replies
sent to the client through the listener's socket. Nothing here awaits on the data path. A
send that fails (full buffer, ICMP unreachable reported by the kernel) drops that datagram
and counts a tx/rx error, as Envoy does; it never raises into the loop.

One record per session goes to the `access_log` when the session ends (Envoy's UDP session
access log), with %START_TIME%, %DURATION%, %UPSTREAM_HOST%, %UPSTREAM_LOCAL_ADDRESS%,
%DOWNSTREAM_REMOTE_ADDRESS%, %DOWNSTREAM_LOCAL_ADDRESS%, %BYTES_RECEIVED% (from the client),
%BYTES_SENT% (to the client). %UPSTREAM_CLUSTER% is empty, as Envoy 1.40 logs it for UDP.
A session the circuit breaker refuses is logged at once with %RESPONSE_FLAGS% UO, as Envoy.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from proxy.context import ServerContext
from proxy.model.udp_proxy import UdpProxyConfig
from proxy.udp.sessions import (
    Action,
    Address,
    SendUpstream,
    Session,
    SessionClosed,
    SessionOpened,
    SessionRefused,
    SessionTable,
)
from proxy.udp.stats import ClusterUdpStats, UdpProxyStats

log = logging.getLogger(__name__)

_READ_BATCH = 64  # datagrams read per readiness event before yielding to the loop

SendDownstream = Callable[[bytes, Address], bool]  # the listener's sendto; False on error


class UdpProxyFilter:
    """One udp_proxy instance (per listener generation and worker)."""

    def __init__(self, config: UdpProxyConfig, context: ServerContext) -> None:
        self.config = config
        self.stats = UdpProxyStats(context.stats, config.stat_prefix)
        self.table = SessionTable(config, context.cluster_manager.get, self.stats)
        # Each session's upstream socket and its cluster's stats (one look-up per datagram).
        self._upstreams: dict[Session, tuple[socket.socket, ClusterUdpStats]] = {}
        self._send_downstream: SendDownstream | None = None
        self._local: Address | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watched: set[Any] = set()  # clusters whose host changes end our sessions
        observability = context.observability
        self.access_logger = (observability.access_logger(config.access_logs)
                              if observability is not None and config.access_logs else None)

    def __repr__(self) -> str:
        return f"UdpProxyFilter({self.table!r})"

    def attach(self, send_downstream: SendDownstream, local: Address) -> None:
        """The listener's socket: where replies go, and its address (for access logs)."""
        self._send_downstream = send_downstream
        self._local = local
        self.table.local = local

    # -- datagrams ----------------------------------------------------------------------------

    def datagram_received(self, data: bytes, peer: Address) -> None:
        loop = asyncio.get_running_loop()
        self._apply(self.table.downstream_received(peer, data, loop.time()), loop)

    def _apply(self, actions: list[Action], loop: asyncio.AbstractEventLoop) -> None:
        for action in actions:
            if isinstance(action, SendUpstream):
                self._send_upstream(action.session, action.data)
            elif isinstance(action, SessionOpened):
                self._open(action.session, loop)
                self._watch(action.session.cluster)
            elif isinstance(action, SessionClosed):
                self._closed(action.session, loop)
            elif isinstance(action, SessionRefused) and self.access_logger is not None:
                self._log_refused(action.downstream, action.start_time)
        if self._timer is None and len(self.table):
            self._arm(loop)

    def _open(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        host = session.host
        family = socket.AF_INET6 if ":" in host.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        stats = self.stats.cluster(session.cluster.name)
        try:
            sock.setblocking(False)
            sock.connect(host.address_port)  # binds the session's ephemeral port
            local = sock.getsockname()
            session.upstream_local = (local[0], local[1])
            loop.add_reader(sock.fileno(), self._upstream_readable, session, sock, stats)
        except OSError as error:  # its datagrams will count as sess_tx_errors
            log.debug("udp_proxy %s: upstream socket to %s: %s", self.config.stat_prefix,
                      host.address_text, error)
        except BaseException:
            sock.close()
            raise
        self._upstreams[session] = (sock, stats)

    def _watch(self, cluster: Any) -> None:
        if cluster not in self._watched:
            self._watched.add(cluster)
            cluster.on_hosts_changed(self._hosts_changed)

    def _hosts_changed(self, cluster: Any) -> None:
        self._apply(self.table.hosts_changed(cluster), asyncio.get_running_loop())

    def _send_upstream(self, session: Session, data: bytes) -> None:
        sock, cluster = self._upstreams[session]
        try:
            sock.send(data)
        except OSError:
            cluster.tx_errors.inc()
            return
        cluster.tx_datagrams.inc()
        cluster.tx_bytes.inc(len(data))

    def _upstream_readable(self, session: Session, sock: socket.socket,
                           cluster: ClusterUdpStats) -> None:
        limit = self.config.upstream_max_rx_datagram_size
        loop = asyncio.get_running_loop()
        for _ in range(_READ_BATCH):
            try:
                data = sock.recv(limit + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNREFUSED: the host's port is closed (ICMP)
                cluster.rx_errors.inc()
                continue
            if len(data) > limit:  # truncated by the kernel: dropped
                cluster.rx_dropped.inc()
                continue
            cluster.rx_datagrams.inc()
            cluster.rx_bytes.inc(len(data))
            if self.table.upstream_received(session, data, loop.time()):
                self._to_client(session, data)

    def _to_client(self, session: Session, data: bytes) -> None:
        if self._send_downstream is None or not self._send_downstream(data,
                                                                      session.downstream):
            self.stats.tx_errors.inc()
            return
        self.stats.tx_datagrams.inc()
        self.stats.tx_bytes.inc(len(data))

    def _closed(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        upstream = self._upstreams.pop(session, None)
        if upstream is not None:
            sock = upstream[0]
            try:
                loop.remove_reader(sock.fileno())
            finally:
                sock.close()
        if self.access_logger is not None:
            self._log(session, loop.time())

    # -- the idle timer -----------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        when = self.table.next_expiry()
        if when is not None:
            self._timer = loop.call_at(when, self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._apply(self.table.expire(loop.time()), loop)

    # -- shutdown --------------------------------------------------------------------------------

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for cluster in self._watched:
            cluster.remove_hosts_listener(self._hosts_changed)
        self._watched.clear()
        for action in self.table.close_all():
            assert isinstance(action, SessionClosed)
            self._closed(action.session, loop)

    def _log_refused(self, downstream: Address, start_time: float) -> None:
        from proxy.observability.request_info import RequestInfo

        assert self.access_logger is not None
        self.access_logger.log(RequestInfo(
            start_time=start_time, duration=0.0, response_flags=("UO",),
            downstream_remote_address=downstream, downstream_local_address=self._local))

    def _log(self, session: Session, now: float) -> None:
        from proxy.observability.request_info import RequestInfo

        assert self.access_logger is not None
        local = session.upstream_local
        info = RequestInfo(
            start_time=session.start_time, duration=now - session.opened_at,
            upstream_host=session.host.address_text,
            upstream_local_address=f"{local[0]}:{local[1]}" if local else "",
            bytes_received=session.rx_bytes, bytes_sent=session.tx_bytes,
            downstream_remote_address=session.downstream,
            downstream_local_address=self._local)
        self.access_logger.log(info)
