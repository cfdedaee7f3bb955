"""udp_proxy's matcher (proxy.model.udp_matcher): which cluster a datagram's addresses route
to. The same configs are run through Envoy 1.40 in
tests/conformance/proxy/test_udp_proxy_vs_envoy.py."""

from __future__ import annotations

from typing import Any

import pytest
from xds.type.matcher.v3 import matcher_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.udp_matcher import translate_matcher

INPUTS = "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3."
ROUTE = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route"
LISTENER = ("127.0.0.1", 5353)


def source(kind: str = "SourceIPInput") -> dict[str, Any]:
    return {"name": "input", "typed_config": {"@type": INPUTS + kind}}


def to(cluster: str) -> dict[str, Any]:
    return {"action": {"name": "route", "typed_config": {"@type": ROUTE, "cluster": cluster}}}


def route(body: dict[str, Any], client: tuple[str, int]) -> str | None:
    return translate_matcher(parse_message(body, matcher_pb2.Matcher)).route(client, LISTENER)


def test_exact_match_map_on_the_source_ip_then_on_no_match() -> None:
    body = {"matcher_tree": {"input": source(), "exact_match_map": {"map": {
        "10.0.0.1": to("one"), "10.0.0.2": to("two")}}}, "on_no_match": to("rest")}
    assert route(body, ("10.0.0.1", 999)) == "one"
    assert route(body, ("10.0.0.2", 999)) == "two"
    assert route(body, ("10.0.0.3", 999)) == "rest"
    del body["on_no_match"]
    assert route(body, ("10.0.0.3", 999)) is None  # no route


def test_prefix_match_map_prefers_the_longest_prefix_and_falls_back() -> None:
    nested_miss = {"matcher": {"matcher_tree": {"input": source("SourcePortInput"),
                                                "exact_match_map": {"map": {"53": to("dns")}}}}}
    body = {"matcher_tree": {"input": source(), "prefix_match_map": {"map": {
        "10.": to("ten"), "10.1.": nested_miss}}}}
    assert route(body, ("10.1.0.1", 53)) == "dns"
    assert route(body, ("10.1.0.1", 54)) == "ten"  # the nested matcher missed: shorter prefix
    assert route(body, ("10.2.0.1", 53)) == "ten"
    assert route(body, ("11.0.0.1", 53)) is None


def test_matcher_list_first_match_wins_with_and_or_not() -> None:
    port_is = {"single_predicate": {"input": source("SourcePortInput"),
                                    "value_match": {"exact": "5000"}}}
    ip_prefix = {"single_predicate": {"input": source(), "value_match": {"prefix": "10."}}}
    dest_port = {"single_predicate": {"input": source("DestinationPortInput"),
                                      "value_match": {"exact": "5353"}}}
    body = {"matcher_list": {"matchers": [
        {"predicate": {"and_matcher": {"predicate": [port_is, ip_prefix]}}, "on_match": to("a")},
        {"predicate": {"not_matcher": ip_prefix}, "on_match": to("b")},
        {"predicate": {"or_matcher": {"predicate": [port_is, dest_port]}}, "on_match": to("c")},
    ]}}
    assert route(body, ("10.0.0.1", 5000)) == "a"
    assert route(body, ("192.168.0.1", 5000)) == "b"
    assert route(body, ("10.0.0.1", 6000)) == "c"  # destination port 5353


@pytest.mark.parametrize(("body", "field"), [
    ({"matcher_tree": {"input": source("ServerNameInput"), "exact_match_map": {"map": {}}}},
     "matcher.matcher_tree.input.typed_config"),
    ({"matcher_list": {"matchers": [{"predicate": {"single_predicate": {
        "input": source(), "custom_match": {"name": "x"}}}, "on_match": to("a")}]}},
     "matcher.matcher_list.matchers[0].predicate.single_predicate.custom_match"),
    ({"on_no_match": {"action": {"name": "x", "typed_config": {
        "@type": "type.googleapis.com/google.protobuf.Empty"}}}},
     "matcher.on_no_match.action.typed_config"),
])
def test_what_we_do_not_implement_is_refused_by_path(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        translate_matcher(parse_message(body, matcher_pb2.Matcher))
    assert caught.value.field == field
