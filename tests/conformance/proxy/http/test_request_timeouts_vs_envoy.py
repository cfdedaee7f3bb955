"""Differential: the HCM's request_headers_timeout and request_timeout, Envoy 1.40 vs ours.

Measured on Envoy 1.40: request_headers_timeout runs from the first byte of each HTTP/1.1
request head (also a later keep-alive request) and answers 408 "request header timeout" with
`connection: close`, counting downstream_rq_header_timeout, downstream_rq_total and
downstream_rq_4xx; a connection that sends nothing is left alone. request_timeout stops once
the response has started: a response streaming while the client's body is still incomplete is
not cut short. On HTTP/2 (codec AUTO or HTTP2) the timer runs from a HEADERS frame opening a
request to the END_HEADERS of its block: a block left open gets 408 and RST_STREAM NO_ERROR on
its stream, and the connection stays.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import pytest

from tests.conformance.proxy.http import h2_frames
from tests.conformance.proxy.http.test_hostile_vs_envoy import bootstrap
from tests.support.differential import envoy_and_pointsman
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

STATS = ("downstream_rq_header_timeout", "downstream_rq_total", "downstream_rq_4xx",
         "downstream_rq_2xx", "downstream_cx_idle_timeout", "downstream_rq_timeout")


def _with_hcm(port: int, backend: int, codec_type: str = "HTTP1", **fields: Any
              ) -> dict[str, Any]:
    config = bootstrap(port, backend, codec_type)
    listener = config["static_resources"]["listeners"][0]
    listener["filter_chains"][0]["filters"][0]["typed_config"].update(fields)
    return config


class _SlowBodyBackend:
    """Answers every request at once with a head and 2 of its 5 body bytes, the rest later."""

    def __init__(self, rest_after: float) -> None:
        self.rest_after = rest_after
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> _SlowBodyBackend:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        """Each request head on the (keep-alive) connection gets an answer; bodies are not
        read (the tests send bodyless requests, or one whose body never ends)."""
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            received = b""
            while True:
                while b"\r\n\r\n" not in received:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    received += chunk
                received = received.split(b"\r\n\r\n", 1)[1]
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab")
                time.sleep(self.rest_after)
                conn.sendall(b"cde")


def _exchange(port: int, pieces: list[tuple[bytes, float]], wait: float = 3.0
              ) -> tuple[list[tuple[int, str, bytes]], bool]:
    """Send each piece then sleep; read until the proxy closes or `wait` passes.
    Returns ([(status, connection header, body)], closed by the proxy)."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        for data, pause in pieces:
            sock.sendall(data)
            time.sleep(pause)
        received, closed = b"", False
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                received += chunk
            closed = True
    return _responses(received), closed


def _responses(data: bytes) -> list[tuple[int, str, bytes]]:
    out = []
    while data:
        head, _, data = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), headers.get("connection", ""), data[:length]))
        data = data[length:]
    return out


def _stats(proxy: Envoy | Pointsman) -> dict[str, int]:
    return {name: proxy.stat(f"http.l7.{name}") for name in STATS}


HEADER_CASES = {
    "first_request_slow": ([(b"GET /a HTTP/1.1\r\nHo", 0.0)], 1),
    "keepalive_request_slow": ([(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n", 0.15),
                                (b"GET /b HTTP/1.1\r\nHo", 0.0)], 2),
    "pipelined_request_slow": ([(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHo",
                                 0.0)], 2),
}


def _header_timeout_run(kind: type[Envoy] | type[Pointsman], backend: int
                        ) -> tuple[dict[str, Any], dict[str, int]]:
    """Every case against one proxy: what the clients saw, and the stats afterwards."""
    port = free_port()
    proxy = kind(_with_hcm(port, backend, request_headers_timeout="0.3s"),
                 name=f"{kind.__name__.lower()}-rq-headers-timeout")
    try:
        proxy.wait_ready()
        seen: dict[str, Any] = {name: _exchange(port, pieces)
                                for name, (pieces, _) in HEADER_CASES.items()}
        seen["nothing_sent"] = _exchange(port, [], wait=0.8)
        return seen, _stats(proxy)
    finally:
        proxy.stop()


def test_request_headers_timeout_matches_envoy() -> None:
    with _SlowBodyBackend(0.0) as backend:
        envoy, envoy_stats = _header_timeout_run(Envoy, backend.port)
        ours, ours_stats = _header_timeout_run(Pointsman, backend.port)
    for name, (_, count) in HEADER_CASES.items():
        responses, closed = envoy[name]
        assert closed and len(responses) == count, name
        assert responses[-1] == (408, "close", b"request header timeout"), name
        assert ours[name] == envoy[name], name
    # Nothing sent: the timer starts at a first byte, so nothing happens (not even a close).
    assert ours["nothing_sent"] == envoy["nothing_sent"] == ([], False)
    assert envoy_stats["downstream_rq_header_timeout"] == len(HEADER_CASES)
    assert ours_stats == envoy_stats


def test_request_timeout_spares_a_started_response() -> None:
    """request_timeout 0.3 s; the upstream answers at once but sends the end of its body only
    after 0.8 s, and the client never finishes its request body."""
    pieces = [(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab", 0.0)]
    with _SlowBodyBackend(0.8) as backend, envoy_and_pointsman(
            lambda port: _with_hcm(port, backend.port, request_timeout="0.3s"),
            "rq-timeout") as (envoy_port, ours_port):
        envoy = _exchange(envoy_port, pieces)
        ours = _exchange(ours_port, pieces)
    assert envoy[0][0][0] == 200 and envoy[0][0][2] == b"abcde"
    assert [(status, body) for status, _, body in ours[0]] == \
        [(status, body) for status, _, body in envoy[0]]
    assert ours[1] == envoy[1]


def _h2_frames_until_quiet(port: int, data: bytes, wait: float = 1.5) -> list[tuple[int, int]]:
    """(type, flags) of the stream-1 frames received before `wait` passes quietly."""
    reader = h2_frames.FrameReader()
    frames = []
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                frames += reader.feed(chunk)
    return [(frame.kind, frame.flags) for frame in frames if frame.stream == 1]


def test_request_headers_timeout_http2_matches_envoy() -> None:
    """Envoy 1.40 times a HEADERS frame whose CONTINUATION never comes: 408 HEADERS, DATA
    "request header timeout" (END_STREAM), RST_STREAM NO_ERROR; the connection stays."""
    data = (h2_frames.PREFACE + h2_frames.settings()
            + h2_frames.headers(1, end_headers=False))
    with _SlowBodyBackend(0.0) as backend, envoy_and_pointsman(
            lambda port: _with_hcm(port, backend.port, "AUTO", request_headers_timeout="0.3s"),
            "rq-headers-timeout-h2") as (envoy_port, ours_port):
        envoy = _h2_frames_until_quiet(envoy_port, data)
        ours = _h2_frames_until_quiet(ours_port, data)
    assert envoy == [(h2_frames.HEADERS, h2_frames.END_HEADERS),
                     (h2_frames.DATA, h2_frames.END_STREAM), (h2_frames.RST_STREAM, 0)]
    assert ours == envoy


def _h2_pieces(port: int, pieces: list[tuple[bytes, float]], wait: float = 1.5
               ) -> list[tuple[int, int, int]]:
    """Send each piece then sleep; (stream, type, flags) of the frames on streams 1 and 3
    received before `wait` passes quietly."""
    reader = h2_frames.FrameReader()
    frames = []
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        for data, pause in pieces:
            sock.sendall(data)
            time.sleep(pause)
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                frames += reader.feed(chunk)
    return [(frame.stream, frame.kind, frame.flags) for frame in frames
            if frame.stream in (1, 3)]


def test_request_headers_timeout_http2_codec_blocks_in_time_or_late_like_envoy() -> None:
    """codec_type HTTP2 (refused before): a block split over HEADERS and a CONTINUATION that
    comes 0.1 s later (timeout 0.4 s) is served; the next stream's block, left open, gets the
    408 and its reset; the timeout counts once for both proxies."""
    start = h2_frames.PREFACE + h2_frames.settings()
    pieces = [(start + h2_frames.headers(1, end_headers=False), 0.1),
              (h2_frames.frame(h2_frames.CONTINUATION, h2_frames.END_HEADERS, 1), 0.3),
              (h2_frames.headers(3, end_headers=False), 0.0)]
    stats = ("downstream_rq_header_timeout", "downstream_rq_total", "downstream_rq_4xx",
             "downstream_rq_2xx")
    with _SlowBodyBackend(0.0) as backend:
        results = {}
        for kind in ("envoy", "pointsman"):
            port = free_port()
            config = _with_hcm(port, backend.port, "HTTP2", request_headers_timeout="0.4s")
            proxy = Envoy(config) if kind == "envoy" else Pointsman(config)
            with proxy:
                proxy.wait_ready()
                frames = _h2_pieces(port, pieces)
                results[kind] = (frames, [proxy.stat(f"http.l7.{name}") for name in stats])
    headers, data, rst = h2_frames.HEADERS, h2_frames.DATA, h2_frames.RST_STREAM
    end_headers, end_stream = h2_frames.END_HEADERS, h2_frames.END_STREAM
    for kind, (frames, _) in results.items():
        one = [f for f in frames if f[0] == 1]  # answered by the backend (DATA split varies)
        assert one[0] == (1, headers, end_headers) and one[-1][2] & end_stream, (kind, one)
        assert rst not in [f[1] for f in one], (kind, one)
        assert [f for f in frames if f[0] == 3] == [
            (3, headers, end_headers), (3, data, end_stream), (3, rst, 0)], (kind, frames)
    assert results["envoy"][1] == [1, 2, 1, 1]
    assert results["pointsman"][1] == results["envoy"][1]
