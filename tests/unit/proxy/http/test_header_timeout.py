"""request_headers_timeout bookkeeping (proxy/http/header_timeout.py) and the HTTP/1.1 codec
state it reads, fed byte by byte."""

from __future__ import annotations

from proxy.codec.http1 import Http1ServerCodec
from proxy.http.header_timeout import HeadersDeadline, header_timeout_reply


def test_deadline_runs_from_the_first_byte_of_a_head() -> None:
    deadline = HeadersDeadline(0.5)
    assert deadline.observe(True, now=10.0) is True
    assert deadline.due == 10.5
    assert deadline.observe(True, now=10.4) is False  # later bytes do not move it
    assert deadline.due == 10.5
    assert not deadline.expired(10.49)
    assert deadline.expired(10.5)


def test_a_complete_head_disarms_and_the_next_head_rearms() -> None:
    deadline = HeadersDeadline(0.5)
    deadline.observe(True, now=1.0)
    assert deadline.observe(False, now=1.2) is False
    assert deadline.due is None and not deadline.expired(100.0)
    assert deadline.observe(True, now=7.0) is True
    assert deadline.due == 7.5


def test_reply_is_envoys() -> None:
    reply = header_timeout_reply()
    assert (reply.status, reply.body, reply.details, reply.flag, reply.close_connection) == \
        (408, "request header timeout", "request_header_timeout", "", True)


def test_codec_reports_a_head_in_progress_byte_by_byte() -> None:
    codec = Http1ServerCodec()
    assert codec.receiving_head is False
    request = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n"
    states = []
    for byte in request:
        codec.receive_data(bytes([byte]))
        states.append(codec.receiving_head)
    assert all(states[:-1]) and states[-1] is False
    codec.receive_data(b"ab")  # the body is not the head
    assert codec.receiving_head is False
    codec.receive_data(b"c")
    codec.response_complete()
    codec.receive_data(b"G")  # the first byte of the next keep-alive request
    assert codec.receiving_head is True


# --- HTTP/2 header blocks ----------------------------------------------------------------------

def _frame(kind: int, flags: int, stream: int, payload: bytes = b"xyz") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) \
        + stream.to_bytes(4, "big") + payload


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS = _frame(0x4, 0, 0, b"")


def _states(chunks: list[bytes]) -> list[int | None]:
    from proxy.http.header_timeout import HeaderBlockScanner

    scanner = HeaderBlockScanner()
    states = []
    for chunk in chunks:
        scanner.feed(chunk)
        states.append(scanner.open_stream)
    return states


def test_scanner_opens_at_headers_and_closes_at_end_headers() -> None:
    headers_open = _frame(0x1, 0x0, 1)
    continuation = _frame(0x9, 0x0, 1)
    last = _frame(0x9, 0x4, 1)
    assert _states([PREFACE + SETTINGS, headers_open, continuation, last]) == [None, 1, 1, None]
    # One HEADERS with END_HEADERS is open only until its payload has arrived.
    whole = PREFACE + SETTINGS + _frame(0x1, 0x4 | 0x1, 3)
    cut = len(whole) - 2
    assert _states([whole[:cut], whole[cut:]]) == [3, None]


def test_scanner_byte_by_byte_matches_whole() -> None:
    data = (PREFACE + SETTINGS + _frame(0x1, 0x0, 1) + _frame(0x9, 0x4, 1)
            + _frame(0x0, 0x1, 1, b"body") + _frame(0x1, 0x0, 3))
    states = _states([bytes([b]) for b in data])
    opened_at = [i for i in range(1, len(states)) if states[i] != states[i - 1]]
    assert [states[i] for i in opened_at] == [1, None, 3]


def test_trailers_are_not_a_request_head() -> None:
    """A later HEADERS on a stream that already had its request headers carries trailers:
    Envoy's request_headers_timeout is over for that stream."""
    data = PREFACE + _frame(0x1, 0x4, 1) + _frame(0x0, 0x0, 1, b"b") + _frame(0x1, 0x0, 1)
    assert _states([data]) == [None]


def test_http2_deadline_runs_from_the_block_start_and_expires_once() -> None:
    from proxy.http.header_timeout import Http2HeadersDeadline

    deadline = Http2HeadersDeadline(0.5)
    assert deadline.feed(PREFACE + SETTINGS + _frame(0x1, 0x0, 1), now=10.0)
    assert not deadline.feed(_frame(0x9, 0x0, 1), now=10.3)  # still from 10.0
    assert not deadline.expired(10.4) and deadline.expired(10.5)
    assert deadline.expire() == 1
    assert not deadline.expired(20.0)
    assert not deadline.feed(_frame(0x9, 0x0, 1), now=20.0)  # stream 1 is not timed again
    assert not deadline.feed(_frame(0x9, 0x4, 1), now=21.0) and deadline.due is None
    assert deadline.feed(_frame(0x1, 0x0, 3), now=22.0) and deadline.due == 22.5
