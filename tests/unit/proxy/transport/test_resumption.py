"""ResumingClientContext in memory (no sockets): TLS handshakes pumped between BIO pairs."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest

from proxy.transport.resumption import ResumingClientContext
from tests.integration.proxy.helpers import server_ssl, tls_files


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    cert, key = tls_files(tmp_path_factory.mktemp("tls"), ["a.test"])["a.test"]
    return server_ssl(cert, key)


def _client(keys: int, maximum: ssl.TLSVersion) -> ResumingClientContext:
    context = ResumingClientContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.maximum_version = maximum
    context.configure_resumption(keys)
    return context


def _connect(client: ResumingClientContext, server: ssl.SSLContext) -> bool:
    """One connection: handshake, one byte each way (the client reads the server's tickets);
    whether the session was resumed."""
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    near = client.wrap_bio(pipes[0], pipes[1], server_hostname="a.test")
    far = server.wrap_bio(pipes[2], pipes[3], server_side=True)

    def pump() -> None:
        pipes[2].write(pipes[1].read())
        pipes[0].write(pipes[3].read())

    for _ in range(10):
        for end in (near, far):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                pass
        pump()
    far.write(b"s")
    pump()
    assert near.read(1) == b"s"
    # The server's close_notify: OpenSSL forgets a session whose connection ends without one.
    with contextlib.suppress(ssl.SSLWantReadError):
        far.unwrap()
    return near.session_reused


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_the_newest_session_is_offered_to_the_next_connection(
        server: ssl.SSLContext, maximum: ssl.TLSVersion) -> None:
    client = _client(1, maximum)
    assert [_connect(client, server) for _ in range(4)] == [False, True, True, True]


def test_a_tls12_session_without_ticket_resumes_by_its_id(tmp_path: Path) -> None:
    cert, key = tls_files(tmp_path, ["a.test"])["a.test"]
    server = server_ssl(cert, key)
    server.options |= ssl.OP_NO_TICKET  # RFC 5246 7.4.1.2: the server's session cache only
    client = _client(1, ssl.TLSVersion.TLSv1_2)
    assert [_connect(client, server) for _ in range(3)] == [False, True, True]


def test_zero_session_keys_disables_resumption(server: ssl.SSLContext) -> None:
    client = _client(0, ssl.TLSVersion.TLSv1_3)
    assert [_connect(client, server) for _ in range(3)] == [False, False, False]


def test_a_tls13_session_is_offered_once(server: ssl.SSLContext) -> None:
    """Envoy drops a single-use (TLSv1.3) session once offered: two connections opened
    before either read its ticket cannot both resume from the one stored session."""
    client = _client(1, ssl.TLSVersion.TLSv1_3)
    assert not _connect(client, server)
    first = client.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="a.test")
    second = client.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="a.test")
    assert first.session is not None and second.session is None
