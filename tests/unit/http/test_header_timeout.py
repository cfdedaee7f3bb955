"""request_headers_timeout bookkeeping (proxy/http/header_timeout.py) and the HTTP/1.1 codec
state it reads, fed byte by byte."""

from __future__ import annotations

from proxy.http.header_timeout import HeadersDeadline, header_timeout_reply
from proxy.http.http1 import Http1ServerCodec


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
