"""udp_proxy's session table, sans-I/O: datagrams and `now` in, actions out.

Envoy doc: configuration/listeners/udp_filters/udp_proxy. A session binds a downstream
address (the client's IP and port) to one upstream host picked by the cluster's load
balancer; every later datagram of that client goes to the same host, through the same
upstream socket, until the session has seen no datagram either way for `idle_timeout`.
With `use_per_packet_load_balancing` a host is picked for every datagram, and a session is
kept per (client, host). A session whose host has become unhealthy (active health checking)
is replaced by a new one on the next datagram ("Envoy will attempt to create a new session to
a healthy host when the next datagram is received"); a session whose host leaves the cluster
ends then (`hosts_changed`).

Limits, as Envoy's: each session holds one unit of the cluster's max_connections circuit
breaker (default 1024; refused datagrams count in `cluster.<name>.upstream_cx_overflow`),
which bounds the table under a flood of source addresses; no healthy host counts
`upstream_cx_none_healthy`, no cluster `udp.<prefix>.downstream_sess_no_route`.

The adapter (proxy.udp.proxy) owns the sockets: it opens one for each `SessionOpened`, sends
the datagrams of `SendUpstream` on it, feeds upstream replies back through `upstream_received`
(which answers with the datagram for the client) and closes the socket on `SessionClosed`.
It calls `expire(now)` at `next_expiry()`.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.model.circuit_breakers import Resource
from proxy.model.udp_proxy import UdpProxyConfig
from proxy.udp.stats import UdpProxyStats
from proxy.upstream.host import Health, Host
from proxy.upstream.lb.base import LbContext, hash_of

Address = tuple[str, int]
SessionKey = tuple[Address, tuple[str, int] | None]  # (client, host with per-packet LB)


@dataclass(eq=False)
class Session:
    """One client's session with one upstream host."""

    id: int
    key: SessionKey
    downstream: Address
    cluster: Any  # proxy.upstream.cluster.ClusterRuntime
    host: Host
    opened_at: float  # the table's clock (monotonic)
    start_time: float = field(default_factory=time.time)  # wall clock, for %START_TIME%
    last_active: float = 0.0
    rx_bytes: int = 0  # from the client
    tx_bytes: int = 0  # to the client
    upstream_local: Address | None = None  # set by the adapter once its socket is bound

    def __repr__(self) -> str:
        return (f"Session({self.id} {self.downstream[0]}:{self.downstream[1]} -> "
                f"{self.host.address_text} rx={self.rx_bytes} tx={self.tx_bytes})")


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session: Session


@dataclass(frozen=True, slots=True)
class SendUpstream:
    session: Session
    data: bytes


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session: Session
    reason: str  # "idle_timeout", "unhealthy_host", "host_removed", "closed"


@dataclass(frozen=True, slots=True)
class SessionRefused:
    """The circuit breaker refused a new session: Envoy 1.40 still logs it (flag UO, no
    upstream host)."""

    downstream: Address
    start_time: float


Action = SessionOpened | SendUpstream | SessionClosed | SessionRefused


def _unhealthy(host: Host) -> bool:
    """Envoy moves a session only off an Unhealthy host (coarseHealth), not a degraded one.
    No flags at all is the common case, tested first (IntFlag arithmetic costs ~2 us)."""
    return bool(host.flags) and host.health is Health.UNHEALTHY


class SessionTable:
    """The sessions of one udp_proxy filter instance (one listener generation, one worker)."""

    def __init__(self, config: UdpProxyConfig, clusters: Callable[[str], Any],
                 stats: UdpProxyStats) -> None:
        self.config = config
        self._clusters = clusters  # name -> ClusterRuntime | None (the cluster manager's get)
        self.stats = stats
        # Oldest activity first: expiry pops from the front (move_to_end on activity).
        self._sessions: OrderedDict[SessionKey, Session] = OrderedDict()
        self._ids = itertools.count(1)
        self.local: Address = ("0.0.0.0", 0)  # the listener's address (DestinationIPInput)
        self._fixed_hash = (hash_of(config.hash_policy.key)
                            if config.hash_policy and config.hash_policy.key else None)

    def __len__(self) -> int:
        return len(self._sessions)

    def __repr__(self) -> str:
        return f"SessionTable({self.config.stat_prefix} -> {self.config.cluster}, {len(self)})"

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    # -- datagrams ----------------------------------------------------------------------------

    def downstream_received(self, peer: Address, data: bytes, now: float) -> list[Action]:
        """A datagram from a client: the actions that forward it (none when it is dropped)."""
        actions: list[Action] = []
        if self.config.per_packet_load_balancing:
            session = self._per_packet_session(peer, now, actions)
        else:
            session = self._sticky_session(peer, now, actions)
        if session is None:
            return actions
        # Envoy counts only the datagrams a session forwards (not those without a route, a
        # host or a session slot).
        self.stats.rx_datagrams.inc()
        self.stats.rx_bytes.inc(len(data))
        session.rx_bytes += len(data)
        self._touch(session, now)
        actions.append(SendUpstream(session, data))
        return actions

    def upstream_received(self, session: Session, data: bytes, now: float) -> bool:
        """A reply from the session's host: True when it goes to the client (the session is
        still open)."""
        if self._sessions.get(session.key) is not session:
            return False
        session.tx_bytes += len(data)
        self._touch(session, now)
        return True

    def _route(self, peer: Address) -> Any:
        """The cluster runtime for a client (the config's cluster or matcher; routing depends
        on addresses only, so a session keeps its route); None: no route, counted."""
        name = self.config.route(peer, self.local)
        cluster = self._clusters(name) if name else None
        if cluster is None:
            self.stats.no_route.inc()
        return cluster

    def _sticky_session(self, peer: Address, now: float,
                        actions: list[Action]) -> Session | None:
        key: SessionKey = (peer, None)
        session = self._sessions.get(key)
        if session is not None:
            if (self._clusters(session.cluster.name) is session.cluster
                    and not _unhealthy(session.host)):
                return session
            # Its host failed its health checks, or its cluster was replaced or removed.
            actions.append(self._close(session, "unhealthy_host"))
        cluster = self._route(peer)
        if cluster is None:
            return None
        host = self._choose(cluster, peer)
        return self._open(cluster, key, peer, host, now, actions) if host else None

    def _per_packet_session(self, peer: Address, now: float,
                            actions: list[Action]) -> Session | None:
        cluster = self._route(peer)
        if cluster is None:
            return None
        host = self._choose(cluster, peer)
        if host is None:
            return None
        key: SessionKey = (peer, host.key)
        session = self._sessions.get(key)
        if session is not None and session.cluster is cluster and session.host is host:
            return session
        if session is not None:
            actions.append(self._close(session, "closed"))
        return self._open(cluster, key, peer, host, now, actions)

    def _choose(self, cluster: Any, peer: Address) -> Host | None:
        host: Host | None = cluster.choose_host(LbContext(hash_key=self._hash(peer)))
        if host is None:
            cluster.stats.counter(cluster.prefix + "upstream_cx_none_healthy").inc()
        return host

    def _hash(self, peer: Address) -> int | None:
        """Envoy's udp_proxy HashPolicyImpl: xxHash64 of the client IP as text, or of key."""
        policy = self.config.hash_policy
        if policy is None:
            return None
        return hash_of(peer[0]) if policy.source_ip else self._fixed_hash

    def _open(self, cluster: Any, key: SessionKey, peer: Address, host: Host, now: float,
              actions: list[Action]) -> Session | None:
        # Envoy 1.40 counts a session refused by the circuit breaker in downstream_sess_total
        # (checked in tests/conformance/proxy/test_udp_proxy_vs_envoy.py).
        self.stats.sess_total.inc()
        if not cluster.circuit_breaker().try_acquire(Resource.CONNECTIONS):
            # Counted in upstream_cx_overflow by the breaker.
            actions.append(SessionRefused(peer, time.time()))
            return None
        session = Session(next(self._ids), key, peer, cluster, host, now, last_active=now)
        self._sessions[key] = session
        self.stats.sess_active.inc()
        actions.append(SessionOpened(session))
        return session

    def _touch(self, session: Session, now: float) -> None:
        session.last_active = now
        self._sessions.move_to_end(session.key)

    # -- time and shutdown --------------------------------------------------------------------

    def next_expiry(self) -> float | None:
        """When the least recently active session times out (None: no sessions)."""
        for session in self._sessions.values():
            return session.last_active + self.config.idle_timeout
        return None

    def expire(self, now: float) -> list[Action]:
        """Close the sessions idle for idle_timeout (counted in `idle_timeout`)."""
        closed: list[Action] = []
        timeout = self.config.idle_timeout
        while self._sessions:
            session = next(iter(self._sessions.values()))
            if session.last_active + timeout > now:
                break
            self.stats.idle_timeout.inc()
            closed.append(self._close(session, "idle_timeout"))
        return closed

    def hosts_changed(self, cluster: Any) -> list[Action]:
        """The cluster's host set changed: sessions on hosts it no longer has end (Envoy's
        udp_proxy member update callback removes them)."""
        live = {id(host) for host in cluster.hosts}
        gone = [session for session in self._sessions.values()
                if session.cluster is cluster and id(session.host) not in live]
        return [self._close(session, "host_removed") for session in gone]

    def close_all(self) -> list[Action]:
        """Every session ends (listener updated or removed, process exit)."""
        return [self._close(session, "closed") for session in list(self._sessions.values())]

    def _close(self, session: Session, reason: str) -> SessionClosed:
        del self._sessions[session.key]
        self.stats.sess_active.dec()
        session.cluster.circuit_breaker().release(Resource.CONNECTIONS)
        return SessionClosed(session, reason)
