"""tls_inspector's ClientHello parser on real ClientHellos (from ssl.MemoryBIO), whole and
fed in 1-byte steps."""

from __future__ import annotations

import ssl

from proxy.listeners.tls_inspector import ClientHello, NeedMore, NotTls, TooLarge, inspect


def client_hello(server_name: str | None, alpn: list[str] | None = None) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def test_sni_and_alpn_are_read() -> None:
    verdict = inspect(client_hello("api.example.com", ["h2", "http/1.1"]))
    assert verdict == ClientHello("api.example.com", ("h2", "http/1.1"))


def test_no_sni_no_alpn() -> None:
    assert inspect(client_hello(None)) == ClientHello("", ())


def test_every_prefix_needs_more_and_never_misparses() -> None:
    data = client_hello("a.test", ["h2"])
    for size in range(len(data)):
        assert inspect(data[:size]) == NeedMore(), size
    assert inspect(data) == ClientHello("a.test", ("h2",))


def test_client_hello_split_over_two_records() -> None:
    data = client_hello("split.test")
    body = data[5:]
    half = len(body) // 2
    records = (data[:3] + half.to_bytes(2, "big") + body[:half]
               + data[:3] + (len(body) - half).to_bytes(2, "big") + body[half:])
    assert inspect(records) == ClientHello("split.test", ())


def test_plain_text_is_not_tls() -> None:
    assert inspect(b"GET / HTTP/1.1\r\n") == NotTls()
    assert inspect(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") == NotTls()  # not a ClientHello


def test_oversized_client_hello_is_refused() -> None:
    data = client_hello("big.test")
    assert inspect(data, max_size=100) == TooLarge()
