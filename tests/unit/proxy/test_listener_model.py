"""Listener translation: supported fields become the model, others are refused by name."""

from __future__ import annotations

import pytest

from protos.errors import ConfigError
from tests.unit.proxy.listener_helpers import TLS_INSPECTOR, build, chain, listener_dict


def test_translates_address_chains_and_listener_filters() -> None:
    listener = build(listener_dict(
        chain("a", server_names=["a.com"]), default="b",
        listener_filters=[{"name": "tls", "typed_config": {"@type": TLS_INSPECTOR}}],
        listener_filters_timeout="2s", per_connection_buffer_limit_bytes=32768,
    ))
    assert listener.per_connection_buffer_limit_bytes == 32768
    assert listener.address == ("127.0.0.1", 10000)
    assert listener.filter_chains[0].match.server_names == ("a.com",)
    assert listener.default_filter_chain is not None
    assert listener.uses_tls_inspector
    assert listener.listener_filters_timeout == 2.0
    assert listener.stats_name == "127.0.0.1_10000"


@pytest.mark.parametrize(("extra", "field"), [
    ({"use_original_dst": True}, "use_original_dst"),
    ({"socket_options": [{"level": 1, "name": 2, "int_value": 1}]}, "socket_options"),
])
def test_unsupported_listener_fields_are_named(extra: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(listener_dict(chain("a"), **extra))
    assert caught.value.field == field
    assert caught.value.resource == "test"


def test_unsupported_match_field_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError) as caught:
        build(listener_dict(chain("a", direct_source_prefix_ranges=[
            {"address_prefix": "10.0.0.0", "prefix_len": 8}])))
    assert caught.value.field == "filter_chains[0].filter_chain_match.direct_source_prefix_ranges"


def test_duplicate_matches_are_rejected_like_envoy() -> None:
    with pytest.raises(ConfigError, match="same match"):
        build(listener_dict(chain("a", server_names=["x.com"]),
                            chain("b", server_names=["x.com"])))


def test_tcp_proxy_errors_name_the_filter_field() -> None:
    body = listener_dict(chain("a"))
    body["filter_chains"][0]["filters"][0]["typed_config"]["max_downstream_connection_duration"] \
        = "5s"
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == \
        "filter_chains[0].filters[0].typed_config.max_downstream_connection_duration"


def test_unknown_network_filter_is_rejected() -> None:
    body = listener_dict(chain("a"))
    body["filter_chains"][0]["filters"][0]["typed_config"] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.echo.v3.Echo"}
    with pytest.raises(ConfigError, match="not supported"):
        build(body)


def test_network_filter_errors_name_the_filter_not_the_one_after_it() -> None:
    limit = {"name": "envoy.filters.network.connection_limit", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.connection_limit.v3"
                 ".ConnectionLimit", "stat_prefix": "cl", "max_connections": 1}}
    body = listener_dict(chain("a"))
    body["filter_chains"][0]["filters"].insert(0, limit)
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == "filter_chains[0].filters[0].typed_config"
    assert caught.value.message.startswith(
        "network filter 'envoy.filters.network.connection_limit' (envoy.extensions.filters."
        "network.connection_limit.v3.ConnectionLimit) is not supported by Pointsman")
    body["filter_chains"][0]["filters"][0] = {
        "name": "redis", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3"
                     ".RedisProxy"}}
    del body["filter_chains"][0]["filters"][1]
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == "filter_chains[0].filters[0].typed_config"  # not doubled
    assert "'redis' (envoy.extensions.filters.network.redis_proxy.v3.RedisProxy)" \
        in caught.value.message


def test_terminal_filter_before_another_is_refused_by_name() -> None:
    body = listener_dict(chain("a"))
    body["filter_chains"][0]["filters"].append(chain("b")["filters"][0])
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == "filter_chains[0].filters[0].name"
    assert "'envoy.filters.network.tcp_proxy'" in caught.value.message
    assert "must be the last" in caught.value.message


def test_chain_without_filters_closes_its_connections() -> None:
    """Envoy accepts `filters: []` (with or without a transport socket) and closes each
    connection of the chain at once (proxy.network.no_filters)."""
    from proxy.listeners.manager import _factory
    from proxy.network.no_filters import NO_FILTERS

    listener = build(listener_dict({"filters": []}, chain("a", server_names=["a.com"])))
    assert listener.filter_chains[0].filter.config_type == ""
    assert _factory(listener.filter_chains[0]) is NO_FILTERS
    assert _factory(listener.filter_chains[1]) is not NO_FILTERS


def test_listener_without_name_is_refused_unless_named_by_the_caller() -> None:
    from envoy.config.listener.v3 import listener_pb2

    from protos.loader import parse_message
    from proxy.model.listener import translate_listener

    body = listener_dict(chain("a"))
    del body["name"]
    message = parse_message(body, listener_pb2.Listener)
    with pytest.raises(ConfigError, match="needs a name"):
        translate_listener(message)  # LDS: the resource name is the listener's name
    assert translate_listener(message, name="given").name == "given"


def _hcm_chain(tracing: bool) -> dict[str, object]:
    import proxy.network.http_connection_manager  # noqa: F401  (registers the HCM factory)

    manager: dict[str, object] = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "http", "route_config": {"name": "local"},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    if tracing:
        manager["tracing"] = {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig"}}}
    return {"filters": [{"name": "hcm", "typed_config": manager}]}


@pytest.mark.parametrize(("direction", "egress"),
                         [("OUTBOUND", True), ("INBOUND", False), (None, False)])
def test_traffic_direction_reaches_the_http_connection_manager_tracing(
        direction: str | None, egress: bool) -> None:
    """Envoy ConnectionManagerTracingConfig: OUTBOUND listeners trace egress, the others
    ingress."""
    extra = {"traffic_direction": direction} if direction else {}
    listener = build(listener_dict(_hcm_chain(True), **extra))
    assert listener.filter_chains[0].filter.config.settings.tracing.egress is egress
    untraced = build(listener_dict(_hcm_chain(False), **extra))
    assert untraced.filter_chains[0].filter.config.settings.tracing is None


_NETWORK_RBAC = {"name": "envoy.filters.network.rbac", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC",
    "stat_prefix": "r", "rules": {"policies": {}}}}


def test_network_rbac_is_a_read_filter_before_the_terminal_one() -> None:
    import proxy.network.rbac  # noqa: F401  (registers the rbac read filter)

    body = listener_dict(chain("a"))
    body["filter_chains"][0]["filters"].insert(0, _NETWORK_RBAC)
    found = build(body).filter_chains[0]
    assert [item.name for item in found.read_filters] == ["envoy.filters.network.rbac"]
    assert found.filter.name == "envoy.filters.network.tcp_proxy"
    body["filter_chains"][0]["filters"][0]["typed_config"]["rules"] = {"policies": {"p": {
        "permissions": [{"header": {"name": "x", "present_match": True}}],
        "principals": [{"any": True}]}}}
    with pytest.raises(ConfigError) as caught:
        build(body)
    assert caught.value.field == ("filter_chains[0].filters[0].typed_config.rules"
                                  ".policies[p].permissions[0].header")


def test_network_rbac_last_is_refused_as_envoy_does() -> None:
    import proxy.network.rbac  # noqa: F401

    with pytest.raises(ConfigError) as caught:
        build(listener_dict({"filters": [_NETWORK_RBAC]}))
    assert caught.value.field == "filter_chains[0].filters[0].name"
    assert "non-terminal filter 'envoy.filters.network.rbac'" in caught.value.message
