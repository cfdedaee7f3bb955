"""Connections that do not start with the HTTP/2 preface on an h2c listener (codec_type
HTTP2), side by side with Envoy 1.40: what each writes (frame types, GOAWAY code), how the
connection ends, and `downstream_cx_protocol_error` per bad connection.

Envoy, measured: for a connection that does not start with the client preface it writes
nothing and closes after delayed_close_timeout (1 s); a valid preface followed by a frame
other than SETTINGS gets its SETTINGS then GOAWAY PROTOCOL_ERROR ("SETTINGS expected"); a
partial preface gets its SETTINGS and waits. Each bad connection counts
http.<stat_prefix>.downstream_cx_protocol_error. We used to write three tracebacks at ERROR per
junk connection (2,000 junk connections: 52,001 log lines); the log now stays quiet.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import pytest

from tests.conformance.proxy.http.h2_frames import PREFACE, FrameReader, frame
from tests.support.bootstraps import http_bootstrap
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

JUNK = {
    "an HTTP/1.1 request": b"GET / HTTP/1.1\r\nhost: x\r\n\r\n",
    "a TLS ClientHello start": b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03",
    "one zero byte": b"\x00",
    "a preface broken after 18 bytes": PREFACE[:18] + b"XX\r\n\r\n",
    "a preface, then CONTINUATION": PREFACE + frame(9, 0, 0),
    "a preface, then DATA": PREFACE + frame(0, 0, 1, b"x"),
}
PARTIAL = PREFACE[:12]


def h2c_bootstrap(port: int) -> dict[str, Any]:
    return http_bootstrap(port, [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}],
                          [], codec_type="HTTP2")


def outcome(port: int, payload: bytes, wait: float = 5.0) -> tuple[Any, ...]:
    """(frame types written, GOAWAY error code or None, how it ended, after ~how long)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.settimeout(wait)
        started = time.monotonic()
        sock.sendall(payload)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
            ending = "EOF"
        except TimeoutError:
            ending = "open"
        except ConnectionResetError:
            ending = "RST"
        elapsed = time.monotonic() - started
    frames = FrameReader().feed(received)
    goaway = next((int.from_bytes(f.payload[4:8], "big") for f in frames if f.kind == 7), None)
    # The delayed close is 1 s on both; round so the machine's load does not matter.
    return tuple(f.kind for f in frames), goaway, ending, round(elapsed)


@pytest.fixture(scope="module")
def proxies() -> Any:
    envoy_port, ours_port = free_port(), free_port()
    envoy = Envoy(h2c_bootstrap(envoy_port), name="envoy-h2c-junk")
    try:
        ours = Pointsman(h2c_bootstrap(ours_port), name="pointsman-h2c-junk",
                         extra_args=("--log-level", "info"))
        try:
            envoy.wait_ready()
            ours.wait_ready()
            yield (envoy, envoy_port), (ours, ours_port)
        finally:
            ours.stop()
    finally:
        envoy.stop()


@pytest.mark.parametrize("case", list(JUNK))
def test_junk_gets_what_envoy_sends(proxies: Any, case: str) -> None:
    (envoy, envoy_port), (ours, ours_port) = proxies
    before = (envoy.stat("http.ingress.downstream_cx_protocol_error"),
              ours.stat("http.ingress.downstream_cx_protocol_error"))
    expected = outcome(envoy_port, JUNK[case])
    assert outcome(ours_port, JUNK[case]) == expected
    assert expected[2] == "EOF" and expected[3] == 1  # closed after the delayed close
    after = (envoy.stat("http.ingress.downstream_cx_protocol_error"),
             ours.stat("http.ingress.downstream_cx_protocol_error"))
    assert after == (before[0] + 1, before[1] + 1)


def test_a_partial_preface_gets_settings_and_waits(proxies: Any) -> None:
    (_envoy, envoy_port), (_ours, ours_port) = proxies
    expected = outcome(envoy_port, PARTIAL, wait=2.0)
    assert expected[0][0] == 4 and expected[2] == "open"  # SETTINGS first, still open
    assert outcome(ours_port, PARTIAL, wait=2.0) == expected


def test_two_thousand_junk_connections_leave_the_log_quiet(proxies: Any) -> None:
    _envoy, (ours, ours_port) = proxies
    before = ours.stat("http.ingress.downstream_cx_protocol_error")
    lines_before = len(logged(ours))
    for _ in range(2000):
        with socket.create_connection(("127.0.0.1", ours_port), timeout=10) as sock:
            sock.sendall(JUNK["an HTTP/1.1 request"])
    deadline = time.monotonic() + 60
    while ours.stat("http.ingress.downstream_cx_protocol_error") < before + 2000:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert ours.stat("http.ingress.downstream_cx_protocol_error") == before + 2000
    # At --log-level info: nothing logged for them (it was three tracebacks each).
    assert len(logged(ours)) == lines_before


def logged(process: Pointsman) -> list[str]:
    """Its log lines, without asyncio debug mode's slow-callback warnings (the tests turn that
    mode on, tests/conftest.py; the sidecar does not)."""
    return [line for line in process.output().splitlines()
            if not re.search(r"took \d+\.\d+ seconds", line)]
