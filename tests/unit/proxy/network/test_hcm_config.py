"""HttpConnectionManager -> settings: defaults, supported fields, refusals by name."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.network.hcm_config import translate_http_connection_manager

ROUTER = {"name": "envoy.filters.http.router", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def _translate(**fields: Any):  # type: ignore[no-untyped-def]
    config = {"stat_prefix": "x", "rds": {"route_config_name": "r", "config_source": {"ads": {}}},
              "http_filters": [ROUTER], **fields}
    return translate_http_connection_manager(parse_message(config,
                                                           hcm_pb2.HttpConnectionManager))


def test_defaults_follow_envoy() -> None:
    config = _translate()
    settings = config.settings
    assert config.rds_route_config_name == "r" and config.route_config is None
    assert (settings.codec_type, settings.server_name, settings.max_request_headers_kb) == \
        ("AUTO", "envoy", 60)
    assert (settings.idle_timeout, settings.stream_idle_timeout) == (3600.0, 300.0)
    assert settings.generate_request_id and not settings.use_remote_address
    assert settings.internal_networks == () and not settings.allow_connect
    # Envoy 1.40's HTTP/2 SETTINGS when Http2ProtocolOptions leaves them unset.
    assert (settings.max_concurrent_streams, settings.initial_stream_window_size,
            settings.initial_connection_window_size, settings.hpack_table_size) == \
        (1024, 16 * 1024 * 1024, 24 * 1024 * 1024, None)


def test_supported_fields() -> None:
    settings = _translate(
        codec_type="HTTP2", use_remote_address=True, xff_num_trusted_hops=2,
        server_name="pointsman", max_request_headers_kb=8, stream_idle_timeout="0s",
        common_http_protocol_options={"idle_timeout": "10s", "max_headers_count": 50},
        http2_protocol_options={"max_concurrent_streams": 7, "hpack_table_size": 0,
                                "initial_connection_window_size": 1048576,
                                "allow_connect": True},
        http_protocol_options={"enable_trailers": True},
        internal_address_config={"cidr_ranges": [{"address_prefix": "10.0.0.0",
                                                  "prefix_len": 8}]},
        upgrade_configs=[{"upgrade_type": "websocket"}],
        http_filters=[ROUTER | {"typed_config": ROUTER["typed_config"]
                                | {"suppress_envoy_headers": True}}]).settings
    assert settings.codec_type == "HTTP2" and settings.use_remote_address
    assert (settings.xff_num_trusted_hops, settings.server_name) == (2, "pointsman")
    assert settings.max_header_bytes == 8 * 1024 and settings.stream_idle_timeout is None
    assert (settings.idle_timeout, settings.max_headers_count) == (10.0, 50)
    assert settings.max_concurrent_streams == 7 and settings.upgrades == {"websocket"}
    assert (settings.hpack_table_size, settings.initial_connection_window_size) == (0, 1048576)
    assert settings.http1_enable_trailers and settings.allow_connect
    assert str(settings.internal_networks[0]) == "10.0.0.0/8"
    assert settings.suppress_envoy_headers


@pytest.mark.parametrize(("fields", "named"), [
    ({"drain_timeout": "5s"}, "drain_timeout"),
    ({"normalize_path": True}, "normalize_path"),
    ({"via": "proxy"}, "via"),
    ({"http_protocol_options": {"header_key_format": {"proper_case_words": {}}}},
     "http_protocol_options.header_key_format"),
    ({"http_filters": [{"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 10}}, ROUTER]}, "http_filters[0]"),
    ({"http_filters": [ROUTER, ROUTER]}, "http_filters[0]"),
])
def test_refused_by_name(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _translate(**fields)
    assert named in str(caught.value)


def test_no_http_filters_is_accepted_without_a_router() -> None:
    """Envoy 1.40 accepts an HCM without http_filters and adds no router (its requests wait
    for the stream idle timeout: tests/conformance/proxy/http/test_filters_vs_envoy.py)."""
    assert not _translate(http_filters=[]).settings.has_router
    assert _translate().settings.has_router


LOCAL_RATELIMIT = {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
    "stat_prefix": "rl"}}


@pytest.mark.parametrize(("filters", "field", "words"), [
    ([{"name": "envoy.filters.http.csrf", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy"}},
      ROUTER],
     "http_filters[0].typed_config",
     "HTTP filter 'envoy.filters.http.csrf' (envoy.extensions.filters.http.csrf.v3.CsrfPolicy) "
     "is not"),
    ([{"name": "envoy.filters.http.router"}], "http_filters[0].typed_config",
     "HTTP filter 'envoy.filters.http.router' needs a typed_config"),
    ([LOCAL_RATELIMIT], "http_filters[0].name",
     "HTTP filter 'envoy.filters.http.local_ratelimit' (envoy.extensions.filters.http."
     "local_ratelimit.v3.LocalRateLimit) is the last HTTP filter"),
    ([ROUTER, LOCAL_RATELIMIT], "http_filters[0].name",
     "the router 'envoy.filters.http.router' must be the last HTTP filter"),
])
def test_filter_errors_name_the_filter(filters: list[Any], field: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _translate(http_filters=filters)
    assert caught.value.field == field
    assert words in caught.value.message


def _router(**fields: Any) -> dict[str, Any]:
    return ROUTER | {"typed_config": ROUTER["typed_config"] | fields}


def test_router_start_child_span_turns_on_upstream_spans_when_tracing() -> None:
    tracing = {"provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
        "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
        "service_name": "s", "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}}}}}
    plain = _translate(tracing=tracing).settings
    child = _translate(tracing=tracing, http_filters=[_router(start_child_span=True)]).settings
    assert plain.tracing is not None and not plain.tracing.spawn_upstream_span
    assert child.tracing is not None and child.tracing.spawn_upstream_span


def test_router_dynamic_stats_false_is_refused_true_accepted() -> None:
    assert _translate(http_filters=[_router(dynamic_stats=True)]).settings is not None
    with pytest.raises(ConfigError, match="dynamic_stats"):
        _translate(http_filters=[_router(dynamic_stats=False)])


def test_local_reply_mappers_add_headers_by_response_flag() -> None:
    """local_reply_config: the first mapper whose response_flag_filter has one of the stream's
    flags adds its headers (Envoy LocalReplyImpl::rewrite); an empty flag list matches any
    flag, never a reply without one."""
    from proxy.codec.headers import Headers
    from proxy.http.local_reply_config import mapped

    mappers = _translate(local_reply_config={"mappers": [
        {"filter": {"response_flag_filter": {"flags": ["UC", "UF"]}},
         "headers_to_add": [{"header": {"key": "X-Reset", "value": "true"},
                             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]},
        {"filter": {"response_flag_filter": {}},
         "headers_to_add": [{"header": {"key": "x-any", "value": "1"}}]}]}
    ).settings.local_reply_mappers
    context: Any = None  # literal values (checked at translation) never read the stream
    assert list(mapped(mappers, ["URX", "UC"], Headers([("x-reset", "no")]), context)) == [
        ("x-reset", "true")]
    assert list(mapped(mappers, ["NR"], Headers(), context)) == [("x-any", "1")]
    assert list(mapped(mappers, [], Headers(), context)) == []


@pytest.mark.parametrize(("mapper", "named"), [
    ({"filter": {"status_code_filter": {"comparison": {"value": {"default_value": 503,
                                                                 "runtime_key": "k"}}}}},
     "status_code_filter"),
    ({"filter": {"response_flag_filter": {}}, "status_code": 500}, "status_code"),
    ({"filter": {"response_flag_filter": {}},
      "headers_to_add": [{"header": {"key": "x", "value": "%START_TIME%"}}]}, "header.value"),
])
def test_local_reply_mappers_we_do_not_implement_are_refused(mapper: dict[str, Any],
                                                             named: str) -> None:
    with pytest.raises(ConfigError) as error:
        _translate(local_reply_config={"mappers": [mapper]})
    assert named in str(error.value) and "local_reply_config" in str(error.value)
