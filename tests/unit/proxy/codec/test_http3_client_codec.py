"""The HTTP/3 client codec (proxy.codec.http3_client) against aioquic's own server, in
memory: datagrams handed across by the test, time passed in explicitly, no sockets."""

from __future__ import annotations

import datetime
import ssl
from typing import Any

import pytest
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from proxy.codec.events import (
    DataReceived,
    InformationalReceived,
    ResetReason,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
)
from proxy.codec.headers import Headers, RequestHead
from proxy.codec.http2 import ErrorCodes
from proxy.codec.http3_client import Http3ClientCodec

NOW = 1000.0


def _certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    start = datetime.datetime(2020, 1, 1)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=36500))
            .sign(key, hashes.SHA256()))
    return cert, key


class Pair:
    """A client codec and an aioquic HTTP/3 server, joined by the test."""

    def __init__(self) -> None:
        cert, key = _certificate()
        server_config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
        server_config.certificate, server_config.private_key = cert, key
        client_config = QuicConfiguration(is_client=True, alpn_protocols=["h3"],
                                          server_name="localhost", verify_mode=ssl.CERT_NONE)
        self.client_quic = QuicConnection(configuration=client_config)
        self.server_quic = QuicConnection(configuration=server_config,
                                          original_destination_connection_id=
                                          self.client_quic.original_destination_connection_id)
        self.codec = Http3ClientCodec(self.client_quic)
        self.server = H3Connection(self.server_quic)
        self.now = NOW
        self.events: list[Any] = []
        self.server_events: list[h3_events.H3Event] = []
        self.client_quic.connect(("127.0.0.1", 443), now=NOW)
        self.exchange()

    def exchange(self) -> None:
        """Hand datagrams across until none moves; time advances 10 ms a round (aioquic
        paces what it sends)."""
        for _ in range(50):
            self.now += 0.01
            moved = False
            for data, _ in self.client_quic.datagrams_to_send(now=self.now):
                self.server_quic.receive_datagram(data, ("127.0.0.1", 1234), now=self.now)
                moved = True
            for data, _ in self.server_quic.datagrams_to_send(now=self.now):
                self.client_quic.receive_datagram(data, ("127.0.0.1", 443), now=self.now)
                moved = True
            while (event := self.server_quic.next_event()) is not None:
                self.server_events.extend(self.server.handle_event(event))
            while (event := self.client_quic.next_event()) is not None:
                self.events.extend(self.codec.receive_quic_event(event))
            if not moved:
                return


def _head(method: str = "GET") -> RequestHead:
    return RequestHead(method, "/p?q=1", "svc.local", "https", Headers([("x-a", "1")]))


def test_request_and_response_with_body_and_trailers() -> None:
    pair = Pair()
    stream_id = pair.codec.send_request_head(_head("POST"), end_stream=False)
    pair.codec.send_data(stream_id, b"body", end_stream=False)
    pair.codec.send_trailers(stream_id, Headers([("x-sum", "42")]))
    pair.exchange()
    heads = [e for e in pair.server_events if isinstance(e, h3_events.HeadersReceived)]
    assert dict(heads[0].headers)[b":path"] == b"/p?q=1"
    assert dict(heads[0].headers)[b":authority"] == b"svc.local"
    assert heads[1].headers == [(b"x-sum", b"42")] and heads[1].stream_ended
    assert b"".join(e.data for e in pair.server_events
                    if isinstance(e, h3_events.DataReceived)) == b"body"
    pair.server.send_headers(stream_id, [(b":status", b"100")])
    pair.server.send_headers(stream_id, [(b":status", b"200"), (b"x-b", b"2")])
    pair.server.send_data(stream_id, b"answer", end_stream=False)
    pair.server.send_headers(stream_id, [(b"grpc-status", b"0")], end_stream=True)
    pair.exchange()
    kinds = [type(e) for e in pair.events]
    assert kinds == [InformationalReceived, ResponseReceived, DataReceived, TrailersReceived,
                     StreamEnded]
    response = pair.events[1]
    assert response.head.status == 200 and response.head.headers.get("x-b") == "2"
    assert pair.events[2].data == b"answer"
    assert list(pair.events[3].trailers) == [("grpc-status", "0")]


def test_a_response_without_body_ends_with_its_head() -> None:
    pair = Pair()
    stream_id = pair.codec.send_request_head(_head(), end_stream=True)
    pair.exchange()
    pair.server.send_headers(stream_id, [(b":status", b"204")], end_stream=True)
    pair.exchange()
    assert [type(e) for e in pair.events] == [ResponseReceived, StreamEnded]
    assert pair.events[0].end_stream


@pytest.mark.parametrize(("code", "reason", "error_code"), [
    (0x10B, ResetReason.REMOTE_REFUSED_STREAM_RESET, ErrorCodes.REFUSED_STREAM),
    (0x102, ResetReason.REMOTE_RESET, 0x102),
])
def test_server_resets_map_to_envoys_reasons(code: int, reason: ResetReason,
                                              error_code: int) -> None:
    """H3_REQUEST_REJECTED is HTTP/2's REFUSED_STREAM (RFC 9114 8.1: not processed)."""
    pair = Pair()
    stream_id = pair.codec.send_request_head(_head(), end_stream=True)
    pair.exchange()
    pair.server_quic.reset_stream(stream_id, code)
    pair.exchange()
    assert pair.events == [StreamReset(stream_id, error_code, reason=reason)]


def test_capacity_is_the_servers_max_streams() -> None:
    """RFC 9000 4.6: the cumulative MAX_STREAMS limit; at it, no stream more until the server
    raises it (aioquic does once more than half are used and closed)."""
    pair = Pair()
    limit = pair.server_quic._local_max_streams_bidi.value
    assert pair.codec.capacity() == limit
    ids = [pair.codec.send_request_head(_head(), end_stream=True) for _ in range(limit)]
    assert pair.codec.capacity() == 0
    pair.exchange()
    for stream_id in ids:
        pair.server.send_headers(stream_id, [(b":status", b"200")], end_stream=True)
    pair.exchange()
    for stream_id in ids:
        pair.codec.finished(stream_id)
    pair.exchange()
    assert pair.codec.capacity() > 0  # the server's MAX_STREAMS frame raised the limit
