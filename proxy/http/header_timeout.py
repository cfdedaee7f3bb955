"""The HCM's `request_headers_timeout` for HTTP/1.1, sans-I/O.

Envoy docs (HttpConnectionManager.request_headers_timeout): "The timer is activated when the
first byte of the headers is received, and is disarmed when the last byte of the headers has
been received." Envoy's HTTP/1.1 codec opens the stream at the first byte of a request
(llhttp's on_message_begin), so the timer covers every request on a keep-alive connection, not
a connection that sends nothing (that is `idle_timeout`'s business). On expiry Envoy 1.40
answers `408` with the body "request header timeout", closes the connection, and counts
`downstream_rq_header_timeout` (also `downstream_rq_total` and `downstream_rq_4xx`: the stream
existed); measured in tests/conformance/http/test_request_timeouts_vs_envoy.py.
"""

from __future__ import annotations

from proxy.http.filter import LocalReply


# What Envoy 1.40 sends (conn_manager_impl onRequestHeaderTimeout; response code details
# "request_header_timeout", no response flag).
def header_timeout_reply() -> LocalReply:
    return LocalReply(408, "request header timeout", details="request_header_timeout",
                      close_connection=True)


class HeadersDeadline:
    """When the request head being received must be complete. `observe` after each read."""

    __slots__ = ("due", "timeout")

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.due: float | None = None

    def observe(self, receiving_head: bool, now: float) -> bool:
        """Update from the codec's state; True when a head just started (arm a timer)."""
        if not receiving_head:
            self.due = None
            return False
        if self.due is not None:
            return False  # the timer runs from the first byte, not the latest
        self.due = now + self.timeout
        return True

    def expired(self, now: float) -> bool:
        return self.due is not None and now >= self.due
