"""Differential: a downstream stream that ends early gives back everything it held upstream.

Envoy resets the upstream stream (RST_STREAM; we send CANCEL) and returns the flow-control
credit of the response DATA it had received and not yet forwarded, so the HTTP/2 connection to
the upstream keeps serving: its connection window is shared by every stream (RFC 9113 6.9.1).
The same for request DATA a stream leaves unread downstream. Both proxies get the smallest
windows HTTP/2 allows (65,535 bytes per stream and per connection), so one leaked window wedges
a connection: later streams on it get their headers and no body.

Each way a stream can end early has its own cluster (its own upstream connection): the client
closes an HTTP/1.1 connection mid-download, resets an HTTP/2 stream, sends GOAWAY and closes,
the route timeout fires mid-body, the stream idle timeout fires mid-body, and an HTTP/2 upload
answered by a local reply. After it, requests on the same upstream connection must be served in
full and at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest

from tests.support.bootstraps import http_bootstrap, static_cluster
from tests.support.envoy import Envoy
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.proxies import AdminProxy

pytestmark = pytest.mark.conformance

SMALLEST_WINDOW = 65535  # RFC 9113 6.9.2: the initial window; Envoy's minimum too
SMALL_WINDOWS = {"initial_stream_window_size": SMALLEST_WINDOW,
                 "initial_connection_window_size": SMALLEST_WINDOW}
H2_SMALL_WINDOWS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": SMALL_WINDOWS}}}
BIG = 8_000_000  # never read out: the download is cut long before its end
AFTER = 300_000  # each request after the early end: several connection windows' worth
CASES = ("h1_close", "h2_rst", "h2_goaway", "route_timeout", "idle_timeout", "h2_local_reply")


def bootstrap(port: int, backend_port: int) -> dict[str, Any]:
    routes: list[dict[str, Any]] = [
        {"match": {"prefix": "/route_timeout"},
         "route": {"cluster": "route_timeout", "timeout": "1s"}},
        {"match": {"prefix": "/idle_timeout"},
         "route": {"cluster": "idle_timeout", "idle_timeout": "1s", "timeout": "0s"}},
        {"match": {"prefix": "/h2_local_reply/direct"},
         "direct_response": {"status": 200, "body": {"inline_string": "local"}}},
    ]
    routes += [{"match": {"prefix": f"/{case}"}, "route": {"cluster": case, "timeout": "0s"}}
               for case in CASES if case not in ("route_timeout", "idle_timeout")]
    clusters = [static_cluster(case, [backend_port],
                               typed_extension_protocol_options=H2_SMALL_WINDOWS)
                for case in CASES]
    return http_bootstrap(port, routes, clusters,
                          http2_protocol_options=SMALL_WINDOWS)


# --- clients ------------------------------------------------------------------------------------

def small_receive_buffer_connection(port: int, *, timeout: float) -> socket.socket:
    """A client socket that stops taking data soon when it does not read (kernel buffers on
    loopback otherwise absorb megabytes before the proxy feels it)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    return sock


def h1_download_then_close(port: int, path: str) -> None:
    """Start a big download, read a little, stall until both windows are full, close."""
    with small_receive_buffer_connection(port, timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: a\r\nx-echo-size: {BIG}\r\n\r\n".encode())
        sock.recv(65536)
        time.sleep(1.5)


def h1_download_until_closed(port: int, path: str) -> None:
    """A download the proxy cuts short (a timeout while the client does not read)."""
    with small_receive_buffer_connection(port, timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: a\r\nx-echo-size: {BIG}\r\n\r\n".encode())
        time.sleep(2.5)  # the timeout (1 s) fires while nothing is read
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # then read out what was sent, up to the close
            if not sock.recv(1 << 20):
                return


class RawH2:
    """An h2c client that acknowledges nothing it receives (so it stalls the proxy)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="latin-1"))
        self.conn.initiate_connection()
        self.ended: set[int] = set()
        self.flush()

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def get(self, path: str, *, size: int = BIG) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [(":method", "GET"), (":scheme", "http"),
                                           (":authority", "a"), (":path", path),
                                           ("x-echo-size", str(size))], end_stream=True)
        self.flush()
        return stream_id

    def post(self, path: str, body: bytes) -> int:
        """Send a request with `body` (within the windows) and no end of stream."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [(":method", "POST"), (":scheme", "http"),
                                           (":authority", "a"), (":path", path)])
        for offset in range(0, len(body), 16384):  # the default SETTINGS_MAX_FRAME_SIZE
            self.conn.send_data(stream_id, body[offset:offset + 16384])
        self.flush()
        return stream_id

    def wait_window(self, size: int, *, seconds: float) -> bool:
        """Read (acknowledging response DATA) until our connection window is `size` again."""
        deadline = time.monotonic() + seconds
        while self.conn.outbound_flow_control_window < size and time.monotonic() < deadline:
            for event in self.read_for(0.1):
                if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    self.ended.add(event.stream_id)
            self.flush()
        return self.conn.outbound_flow_control_window >= size

    def read_for(self, seconds: float) -> list[Any]:
        events: list[Any] = []
        deadline = time.monotonic() + seconds
        self.sock.settimeout(0.1)
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break
            events += self.conn.receive_data(data)
            self.flush()
        return events

    def close(self) -> None:
        self.sock.close()


def h2_download_then_reset(port: int, path: str) -> None:
    client = RawH2(port)
    try:
        stream_id = client.get(path)
        client.read_for(1.5)  # our window (65,535) fills, then the proxy's towards upstream
        client.conn.reset_stream(stream_id, error_code=0x8)  # CANCEL
        client.flush()
        client.read_for(0.5)
    finally:
        client.close()


def h2_download_then_goaway(port: int, path: str) -> None:
    client = RawH2(port)
    try:
        client.get(path)
        client.read_for(1.5)
        client.conn.close_connection()
        client.flush()
    finally:
        client.close()


def h2_upload_answered_locally(port: int, path: str) -> None:
    """Uploads answered before their body is read: the proxy must give back the window their
    unread DATA holds, or this client's connection (window 65,535) stalls after one or two.
    (Window updates come in batches: libnghttp2 sends one once half the window is consumed.)"""
    client = RawH2(port)
    try:
        sent = 0
        for _ in range(8):
            assert client.wait_window(16_384, seconds=3.0), \
                f"the proxy kept the connection window of unread uploads ({sent} bytes sent)"
            size = min(client.conn.outbound_flow_control_window, 60_000)
            stream_id = client.post(f"{path}/direct", b"u" * size)
            sent += size
            client.wait_window(SMALLEST_WINDOW, seconds=0.3)  # reads the local reply
            assert stream_id in client.ended
        assert sent > 4 * SMALLEST_WINDOW
    finally:
        client.close()


EARLY_ENDS: dict[str, Callable[[int, str], None]] = {
    "h1_close": h1_download_then_close,
    "h2_rst": h2_download_then_reset,
    "h2_goaway": h2_download_then_goaway,
    "route_timeout": h1_download_until_closed,
    "idle_timeout": h1_download_until_closed,
    "h2_local_reply": h2_upload_answered_locally,
}


def timed_get(port: int, path: str) -> tuple[int, float]:
    """Body bytes ("x") of a GET of AFTER bytes over HTTP/1.1, and how long it took (3 s at
    most)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nhost: a\r\nx-echo-size: {AFTER}\r\n"
                     "connection: close\r\n\r\n".encode())
        received = bytearray()
        try:
            while chunk := sock.recv(1 << 20):
                received += chunk
        except TimeoutError:
            pass
    _head, _, body = bytes(received).partition(b"\r\n\r\n")
    # The body is AFTER bytes of "x", chunked or not (chunk sizes are hex digits, never "x").
    return body.count(b"x"), time.monotonic() - started


def run_case(proxy: AdminProxy, port: int, case: str, backend: EchoBackend) -> dict[str, Any]:
    resets_before = len(backend.resets)
    try:
        EARLY_ENDS[case](port, f"/{case}")
        early_end_error = None
    except AssertionError as error:  # reported by the case's own test
        early_end_error = str(error)
    time.sleep(0.5)
    after = [timed_get(port, f"/{case}/after") for _ in range(3)]
    return {
        "early_end_error": early_end_error,
        "bodies_after": [size for size, _ in after],
        "slowest_after_s": max(seconds for _, seconds in after),
        "upstream_connections": proxy.stat(f"cluster.{case}.upstream_cx_total"),
        "upstream_rq_active": proxy.stat(f"cluster.{case}.upstream_rq_active"),
        "upstream_resets": backend.resets[resets_before:],
    }


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, dict[str, Any]]]:
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with EchoBackend("h2", http2=True) as backend:
        for name, kind in (("envoy", Envoy), ("ours", Pointsman)):
            port = free_port()
            proxy = kind(bootstrap(port, backend.port), name=f"{name}-early-end")
            try:
                proxy.wait_ready()
                results[name] = {case: run_case(proxy, port, case, backend) for case in CASES}
            finally:
                proxy.stop()
    return results


@pytest.mark.parametrize("case", CASES)
def test_upstream_connection_serves_after_an_early_end(
        outcomes: dict[str, dict[str, dict[str, Any]]], case: str) -> None:
    envoy, ours = outcomes["envoy"][case], outcomes["ours"][case]
    assert envoy["early_end_error"] is None and ours["early_end_error"] is None, (envoy, ours)
    assert envoy["bodies_after"] == [AFTER] * 3, envoy  # the reference behaves as described
    assert ours["bodies_after"] == [AFTER] * 3, ours
    assert ours["slowest_after_s"] < 2.0, ours
    assert ours["upstream_connections"] == envoy["upstream_connections"] == 1
    assert ours["upstream_rq_active"] == envoy["upstream_rq_active"] == 0


@pytest.mark.parametrize("case", [c for c in CASES if c != "h2_local_reply"])
def test_the_abandoned_upstream_stream_is_reset(
        outcomes: dict[str, dict[str, dict[str, Any]]], case: str) -> None:
    """Both reset the abandoned stream upstream, once. Envoy 1.40 says INTERNAL_ERROR; we say
    CANCEL, the code RFC 9113 section 7 gives for a stream that is no longer needed."""
    assert len(outcomes["envoy"][case]["upstream_resets"]) == 1
    assert outcomes["ours"][case]["upstream_resets"] == [0x8]
