"""UDP listeners and udp_proxy configs: translated into the model, or refused by field path
(proxy.model.udp_listener, proxy.model.udp_proxy). Envoy 1.40's answers to the same configs
(`envoy --mode validate`) are noted where we follow them."""

from __future__ import annotations

from typing import Any

import pytest

from protos.errors import ConfigError
from proxy.model.listener import Listener
from proxy.model.udp_proxy import UdpHashPolicy
from tests.support.udp_servers import udp_proxy_listener
from tests.unit.proxy.listener_helpers import build

ROUTE = "type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route"


def udp(config: dict[str, Any] | None = None, **extra: Any) -> Listener:
    body = udp_proxy_listener("dns", 5353, {"stat_prefix": "dns", "cluster": "backend",
                                            **(config or {})}, **extra)
    body["name"] = "test"
    return build(body)


def refused(config: dict[str, Any] | None = None, **extra: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        udp(config, **extra)
    assert caught.value.resource == "test"
    return caught.value


def test_a_udp_listener_with_udp_proxy_and_its_defaults() -> None:
    listener = udp()
    assert listener.is_udp and listener.filter_chains == ()
    assert listener.address == ("127.0.0.1", 5353)
    assert listener.udp is not None and listener.udp.max_rx_datagram_size == 1500
    proxy = listener.udp.proxy
    assert proxy is not None
    assert (proxy.stat_prefix, proxy.cluster, proxy.idle_timeout) == ("dns", "backend", 60.0)
    assert proxy.hash_policy is None and not proxy.per_packet_load_balancing
    assert proxy.upstream_max_rx_datagram_size == 1500


def test_udp_proxy_fields_we_implement() -> None:
    listener = udp({"idle_timeout": "2.5s", "hash_policies": [{"source_ip": True}],
                    "use_per_packet_load_balancing": True,
                    "upstream_socket_config": {"max_rx_datagram_size": 9000}},
                   udp_listener_config={"downstream_socket_config": {
                       "max_rx_datagram_size": 512}})
    assert listener.udp is not None and listener.udp.max_rx_datagram_size == 512
    proxy = listener.udp.proxy
    assert proxy is not None
    assert proxy.idle_timeout == 2.5
    assert proxy.hash_policy == UdpHashPolicy(source_ip=True)
    assert proxy.per_packet_load_balancing
    assert proxy.upstream_max_rx_datagram_size == 9000
    assert udp({"hash_policies": [{"key": "k"}]}).udp.proxy.hash_policy == (  # type: ignore
        UdpHashPolicy(key="k"))


def test_the_matcher_form_routes_to_its_on_no_match_cluster() -> None:
    matcher = {"on_no_match": {"action": {"name": "route", "typed_config": {
        "@type": ROUTE, "cluster": "other"}}}}
    config: dict[str, Any] = {"stat_prefix": "dns", "matcher": matcher}
    body = udp_proxy_listener("test", 5353, config)
    listener = build(body)
    assert listener.udp is not None and listener.udp.proxy is not None
    assert listener.udp.proxy.route(("10.0.0.1", 1), ("127.0.0.1", 5353)) == "other"


def test_a_udp_listener_without_filters_is_accepted_as_envoy_does() -> None:
    body = udp_proxy_listener("test", 5353, {})
    del body["listener_filters"]
    listener = build(body)
    assert listener.udp is not None and listener.udp.proxy is None


@pytest.mark.parametrize(("config", "extra", "field"), [
    ({}, {"udp_listener_config": {"quic_options": {}}}, "udp_listener_config.quic_options"),
    ({}, {"udp_listener_config": {"downstream_socket_config": {"prefer_gro": True}}},
     "udp_listener_config.downstream_socket_config.prefer_gro"),
    ({}, {"filter_chains": [{"filters": []}]}, "filter_chains"),
    ({}, {"socket_options": [{"level": 1, "name": 2, "int_value": 1}]}, "socket_options"),
    ({"use_original_src_ip": True}, {}, "listener_filters[0].typed_config.use_original_src_ip"),
    ({"hash_policies": [{"source_ip": True}, {"key": "a"}]}, {},
     "listener_filters[0].typed_config.hash_policies"),
    ({"access_log_options": {"flush_access_log_on_tunnel_connected": True}}, {},
     "listener_filters[0].typed_config.access_log_options"),
    ({"stat_prefix": ""}, {}, "listener_filters[0].typed_config.stat_prefix"),
    ({"matcher": {"matcher_tree": {"input": {"name": "sni", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.matching.common_inputs.network.v3"
                 ".ServerNameInput"}}, "exact_match_map": {"map": {}}}}, "cluster": None}, {},
     "listener_filters[0].typed_config.matcher.matcher_tree.input.typed_config"),
    ({"matcher": {"on_no_match": {"action": {"name": "r", "typed_config": {
        "@type": ROUTE, "cluster": "x"}}, "keep_matching": True}}, "cluster": None}, {},
     "listener_filters[0].typed_config.matcher.on_no_match.keep_matching"),
])
def test_what_we_do_not_implement_is_refused_by_path(config: dict[str, Any],
                                                     extra: dict[str, Any], field: str) -> None:
    if config.get("cluster", "") is None:
        body = udp_proxy_listener("test", 5353, {"stat_prefix": "dns", "matcher": config[
            "matcher"]}, **extra)
        with pytest.raises(ConfigError) as caught:
            build(body)
        error = caught.value
    else:
        error = refused(config, **extra)
    assert error.field == field


def test_a_tcp_listener_is_not_made_udp_by_a_udp_listener_filter() -> None:
    body = udp_proxy_listener("test", 5353, {"stat_prefix": "dns", "cluster": "backend"})
    body["address"]["socket_address"]["protocol"] = "TCP"
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == "filter_chains"
