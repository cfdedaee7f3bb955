"""Filter chain selection in Envoy's order (listener_components.proto, FilterChainMatch)."""

from __future__ import annotations

from proxy.listeners.matching import ConnectionFacts, select_filter_chain
from tests.unit.proxy.listener_helpers import build, chain, listener_dict


def chosen(body: dict, **facts: object) -> str | None:
    listener = build(body)
    values: dict = {"destination": ("127.0.0.1", 10000), "source": ("10.0.0.9", 40000)}
    values.update(facts)
    result = select_filter_chain(listener, ConnectionFacts(**values))
    return None if result is None else result.filter.config.clusters[0].name


def test_server_names_exact_beats_wildcard_beats_catch_all() -> None:
    body = listener_dict(
        chain("exact", server_names=["api.example.com"]),
        chain("wild", server_names=["*.example.com"]),
        chain("deeper_wild", server_names=["*.eu.example.com"]),
        chain("any"),
    )
    assert chosen(body, server_name="api.example.com") == "exact"
    assert chosen(body, server_name="www.example.com") == "wild"
    assert chosen(body, server_name="a.eu.example.com") == "deeper_wild"
    assert chosen(body, server_name="API.Example.com") == "exact"
    assert chosen(body, server_name="other.org") == "any"
    assert chosen(body, server_name="") == "any"


def test_wildcard_does_not_match_the_bare_domain() -> None:
    body = listener_dict(chain("wild", server_names=["*.example.com"]))
    assert chosen(body, server_name="example.com") is None


def test_destination_port_is_decided_first_without_backtracking() -> None:
    # The port-specific chain wins the first step even though its server_names then fail:
    # Envoy does not fall back to the port-less chain that names the server.
    body = listener_dict(
        chain("port", destination_port=10000, server_names=["a.com"]),
        chain("sni", server_names=["b.com"]),
        default="fallback",
    )
    assert chosen(body, server_name="a.com") == "port"
    assert chosen(body, server_name="b.com") == "fallback"
    assert chosen(body, destination=("127.0.0.1", 10001), server_name="b.com") == "sni"


def test_destination_ip_longest_prefix() -> None:
    body = listener_dict(
        chain("wide", prefix_ranges=[{"address_prefix": "127.0.0.0", "prefix_len": 8}]),
        chain("narrow", prefix_ranges=[{"address_prefix": "127.0.0.0", "prefix_len": 24}]),
        chain("any"),
    )
    assert chosen(body, destination=("127.0.0.1", 10000)) == "narrow"
    assert chosen(body, destination=("127.1.0.1", 10000)) == "wide"
    assert chosen(body, destination=("10.1.0.1", 10000)) == "any"


def test_transport_protocol_and_alpn() -> None:
    body = listener_dict(
        chain("h2", transport_protocol="tls", application_protocols=["h2"]),
        chain("tls", transport_protocol="tls"),
        chain("plain"),
    )
    assert chosen(body, transport_protocol="tls", application_protocols=("h2", "http/1.1")) == "h2"
    assert chosen(body, transport_protocol="tls", application_protocols=("http/1.1",)) == "tls"
    assert chosen(body, transport_protocol="raw_buffer") == "plain"


def test_source_type_prefix_and_port() -> None:
    body = listener_dict(
        chain("local", source_type="SAME_IP_OR_LOOPBACK"),
        chain("external"),
    )
    assert chosen(body, source=("127.0.0.5", 1234)) == "local"
    assert chosen(body, source=("10.1.1.1", 1234)) == "external"
    body = listener_dict(
        chain("net", source_prefix_ranges=[{"address_prefix": "10.0.0.0", "prefix_len": 8}]),
        chain("port", source_ports=[5555]),
    )
    assert chosen(body, source=("10.1.1.1", 5555)) == "net"  # source IP is decided before port
    assert chosen(body, source=("192.168.1.1", 5555)) == "port"
    assert chosen(body, source=("192.168.1.1", 6666)) is None


def test_default_filter_chain_when_nothing_matches() -> None:
    body = listener_dict(chain("a", server_names=["a.com"]), default="fallback")
    assert chosen(body, server_name="z.com") == "fallback"
    assert chosen(body, server_name="a.com") == "a"
