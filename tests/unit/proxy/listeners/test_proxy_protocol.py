"""PROXY protocol v1/v2 parsing and building (haproxy proxy-protocol.txt)."""

from __future__ import annotations

import pytest

from proxy.listeners.proxy_protocol import (
    Invalid,
    NeedMore,
    NotProxyProtocol,
    ProxyHeader,
    build_v1,
    build_v2,
    parse,
)

SOURCE, DESTINATION = ("192.0.2.10", 51000), ("198.51.100.1", 443)


@pytest.mark.parametrize("build", [build_v1, build_v2])
def test_round_trip_and_only_header_bytes_counted(build) -> None:
    header = build(SOURCE, DESTINATION)
    verdict = parse(header + b"payload")
    assert isinstance(verdict, ProxyHeader)
    assert (verdict.source, verdict.destination, verdict.length) == \
        (SOURCE, DESTINATION, len(header))


@pytest.mark.parametrize("build", [build_v1, build_v2])
def test_ipv6(build) -> None:
    verdict = parse(build(("2001:db8::1", 1), ("2001:db8::2", 2)))
    assert isinstance(verdict, ProxyHeader)
    assert verdict.source == ("2001:db8::1", 1)


@pytest.mark.parametrize("build", [build_v1, build_v2])
def test_prefixes_need_more(build) -> None:
    header = build(SOURCE, DESTINATION)
    for size in range(len(header)):
        assert isinstance(parse(header[:size]), NeedMore), size


def test_not_proxy_protocol_and_invalid() -> None:
    assert parse(b"GET / HTTP/1.1\r\n") == NotProxyProtocol()
    assert parse(b"\x16\x03\x01") == NotProxyProtocol()
    assert isinstance(parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), Invalid)
    assert isinstance(parse(b"PROXY TCP4 " + b"9" * 120), Invalid)


def test_v1_unknown_and_v2_local_keep_real_addresses() -> None:
    assert parse(b"PROXY UNKNOWN\r\n") == ProxyHeader(15, None, None, 1)
    local = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00, 0x00, 0x00])
    assert parse(local) == ProxyHeader(16, None, None, 2)


def test_v2_with_tlvs_longer_than_536_bytes() -> None:
    from proxy.listeners.proxy_protocol import header_length

    header = build_v2(SOURCE, DESTINATION)
    tlv = b"\x04" + (1000).to_bytes(2, "big") + b"x" * 1000  # PP2_TYPE_NOOP
    body_length = int.from_bytes(header[14:16], "big") + len(tlv)
    long_header = header[:14] + body_length.to_bytes(2, "big") + header[16:] + tlv
    assert header_length(long_header[:16]) == len(long_header)
    assert isinstance(parse(long_header[:536]), NeedMore)
    verdict = parse(long_header + b"data")
    assert isinstance(verdict, ProxyHeader)
    assert (verdict.source, verdict.length) == (SOURCE, len(long_header))
