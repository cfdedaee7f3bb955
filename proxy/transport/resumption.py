"""Upstream TLS session resumption, as Envoy's ClientContextImpl does it.

UpstreamTlsContext.max_session_keys (tls.proto; default 1, 0 disables resumption) is how many
sessions a cluster's TLS context keeps. Envoy stores each new session (newest first, at most
max_session_keys) and offers the newest on every new connection of the context
(SSL_set_session); a TLSv1.3 session is single-use, dropped once offered (source/common/tls/
context_impl.cc, ClientContextImpl::newSsl / newSessionKey).

Python's ssl has no new-session callback, so `ResumingClientContext` collects the session of
the connections it made when the next one starts: by then a TLS 1.3 connection that read past
its handshake holds the server's ticket (`SSLSession.has_ticket`), and a TLS 1.2 session is
complete at the end of the handshake, with a ticket or only a session ID. Every upstream TLS
connection (pools, tcp_proxy, health checks) goes through `wrap_bio` (asyncio and uvloop
alike), so they all share the context's sessions, as in Envoy.
"""

from __future__ import annotations

import ssl
from collections import deque
from typing import Any

_PENDING_LIMIT = 64  # connections whose session is not collected yet (oldest forgotten first)


class ResumingClientContext(ssl.SSLContext):
    """A client SSLContext that offers its newest stored session to each new connection."""

    max_session_keys: int
    _sessions: deque[tuple[ssl.SSLSession, bool]]  # (session, single use), newest first
    # Connections made whose new session is not collected yet, with the id of the session
    # they were offered (a resumed connection shows that one until its new ticket arrives).
    _pending: deque[tuple[ssl.SSLObject, bytes]]

    def configure_resumption(self, max_session_keys: int) -> None:
        self.max_session_keys = max_session_keys
        self._sessions = deque()
        self._pending = deque(maxlen=_PENDING_LIMIT)

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: Any = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if server_side or not getattr(self, "max_session_keys", 0):
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if session is None:
            session = self._take_session()
        connection = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self._pending.append((connection, session.id if session is not None else b""))
        return connection

    def _take_session(self) -> ssl.SSLSession | None:
        self._collect()
        if not self._sessions:
            return None
        session, single_use = self._sessions[0]
        if single_use:
            self._sessions.popleft()
        return session

    def _collect(self) -> None:
        """Store the new sessions of earlier connections (oldest first, so that the newest
        ends up in front) and keep at most max_session_keys; a connection without a new
        ticket yet is looked at again next time."""
        waiting: deque[tuple[ssl.SSLObject, bytes]] = deque(maxlen=_PENDING_LIMIT)
        for connection, offered in self._pending:
            try:
                session = connection.session
                version = connection.version()
            except (ValueError, ssl.SSLError):
                continue
            if version is None or session is None:
                waiting.append((connection, offered))  # handshake not done yet
                continue
            if version != "TLSv1.3":
                # TLS 1.2 and below: the session is whole once the handshake is (RFC 5246
                # 7.3), resumable by its ticket (RFC 5077) or by its session ID through the
                # server's cache (7.4.1.2); a resumed session is not a new one.
                if not connection.session_reused and (session.has_ticket or session.id):
                    self._sessions.appendleft((session, False))
                continue
            if not session.has_ticket or session.id == offered:
                waiting.append((connection, offered))  # TLS 1.3: the ticket comes later
                continue
            self._sessions.appendleft((session, True))
        self._pending = waiting
        while len(self._sessions) > self.max_session_keys:
            self._sessions.pop()
