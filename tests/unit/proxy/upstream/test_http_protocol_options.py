"""The cluster's protocol options as the HTTP pools read them: what we honour is translated
with the cluster, anything else set (fields, or keys of typed_extension_protocol_options) is
refused naming it."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.cluster import Cluster, translate_cluster
from proxy.model.protocol_options import Http2Windows
from proxy.upstream.host import Host
from proxy.upstream.pools import upstream_protocol
from proxy.upstream.pools.http2 import Http2Connection, Http2Pool

OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def _cluster(options: dict[str, Any]) -> Cluster:
    return translate_cluster(parse_message({
        "name": "a", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {OPTIONS: {
            "@type": f"type.googleapis.com/{OPTIONS}", **options}}}, cluster_pb2.Cluster))


def test_http1_enable_trailers_is_honoured() -> None:
    protocol = upstream_protocol(_cluster({"explicit_http_config": {
        "http_protocol_options": {"enable_trailers": True}}}))
    assert not protocol.http2 and protocol.http1_trailers


def test_http2_max_concurrent_streams_and_idle_timeout() -> None:
    protocol = upstream_protocol(_cluster({
        "common_http_protocol_options": {"idle_timeout": "5s"},
        "explicit_http_config": {"http2_protocol_options": {"max_concurrent_streams": 7}}}))
    assert (protocol.http2, protocol.max_concurrent_streams, protocol.idle_timeout) == \
        (True, 7, 5.0)


def test_http2_windows_default_to_envoys_and_are_honoured() -> None:
    default = upstream_protocol(_cluster({"explicit_http_config": {
        "http2_protocol_options": {}}})).http2_windows
    assert (default.initial_stream_window_size, default.initial_connection_window_size,
            default.hpack_table_size) == (16 * 1024 * 1024, 24 * 1024 * 1024, None)
    chosen = upstream_protocol(_cluster({"auto_config": {"http2_protocol_options": {
        "initial_stream_window_size": 65535, "initial_connection_window_size": 1048576,
        "hpack_table_size": 0}}})).http2_windows
    assert (chosen.initial_stream_window_size, chosen.initial_connection_window_size,
            chosen.hpack_table_size) == (65535, 1048576, 0)


@pytest.mark.parametrize(("options", "field"), [
    ({"explicit_http_config": {"http_protocol_options": {"allow_chunked_length": True}}},
     "explicit_http_config.http_protocol_options.allow_chunked_length"),
    ({"explicit_http_config": {"http2_protocol_options": {"max_outbound_frames": 10}}},
     "explicit_http_config.http2_protocol_options.max_outbound_frames"),
    ({"auto_config": {"http_protocol_options": {"accept_http_10": True}}},
     "auto_config.http_protocol_options.accept_http_10"),
    ({"common_http_protocol_options": {"max_requests_per_connection": 1}},
     "common_http_protocol_options.max_requests_per_connection"),
    ({"use_downstream_protocol_config": {}}, "use_downstream_protocol_config"),
    # Upstream HTTP/3 takes no Http3ProtocolOptions field yet (proxy.upstream.pools.http3).
    ({"explicit_http_config": {"http3_protocol_options": {"allow_extended_connect": True}}},
     "explicit_http_config.http3_protocol_options.allow_extended_connect"),
    ({"auto_config": {"http3_protocol_options": {}}}, "auto_config.http3_protocol_options"),
])
def test_anything_else_is_refused_by_name(options: dict[str, Any], field: str) -> None:
    # Refused when the cluster is translated (a NACK or start-up error), not on first use.
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _cluster(options)


def _translate(body: dict[str, Any]) -> Cluster:
    return translate_cluster(parse_message({"name": "a", "type": "STATIC", **body},
                                           cluster_pb2.Cluster))


def test_an_unknown_key_is_refused_naming_it() -> None:
    """Envoy refuses it ("Didn't find a registered network or http filter or protocol options
    implementation for name"); before, a misspelled key left an HTTP/2 cluster on HTTP/1.1."""
    misspelled = "envoy.extensions.upstream.http.v3.HttpProtocolOptions"
    with pytest.raises(ConfigError) as caught:
        _translate({"typed_extension_protocol_options": {misspelled: {
            "@type": f"type.googleapis.com/{OPTIONS}",
            "explicit_http_config": {"http2_protocol_options": {}}}}})
    assert caught.value.field == f"typed_extension_protocol_options[{misspelled}]"
    assert caught.value.resource == "a" and "unknown protocol options" in caught.value.message


def test_a_known_key_with_another_type_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected a envoy"):
        _translate({"typed_extension_protocol_options": {OPTIONS: {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"}}})


def test_tcp_protocol_options_idle_timeout_is_translated() -> None:
    tcp = "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions"
    model = _translate({"typed_extension_protocol_options": {tcp: {
        "@type": f"type.googleapis.com/{tcp}", "idle_timeout": "2s"}}})
    assert model.protocol_options.tcp_idle_timeout == 2.0
    assert _translate({}).protocol_options.tcp_idle_timeout == 600.0  # Envoy's 10 minutes


def test_deprecated_cluster_fields_say_the_same() -> None:
    """Without HttpProtocolOptions, Envoy reads Cluster.http2_protocol_options & co. (the
    quick-start xDS bootstrap uses `http2_protocol_options: {}`)."""
    protocol = upstream_protocol(_translate({
        "http2_protocol_options": {"max_concurrent_streams": 5},
        "common_http_protocol_options": {"idle_timeout": "7s"}}))
    assert (protocol.http2, protocol.max_concurrent_streams, protocol.idle_timeout) == \
        (True, 5, 7.0)
    assert upstream_protocol(_translate({"http_protocol_options": {
        "enable_trailers": True}})).http1_trailers
    typed_wins = upstream_protocol(_translate({
        "http2_protocol_options": {}, "typed_extension_protocol_options": {OPTIONS: {
            "@type": f"type.googleapis.com/{OPTIONS}",
            "explicit_http_config": {"http_protocol_options": {}}}}}))
    assert not typed_wins.http2
    with pytest.raises(ConfigError) as caught:
        _translate({"http2_protocol_options": {}, "http_protocol_options": {}})
    assert caught.value.field == "http2_protocol_options"
    with pytest.raises(ConfigError) as caught:
        _translate({"http2_protocol_options": {"max_outbound_frames": 3}})
    assert caught.value.field == "http2_protocol_options.max_outbound_frames"


async def test_the_windows_are_what_the_upstream_connection_advertises() -> None:
    windows = Http2Windows(initial_stream_window_size=100_000,
                           initial_connection_window_size=3_000_000, hpack_table_size=0)
    pool = Http2Pool(object(), Host("127.0.0.1", 1), connect_timeout=1.0, windows=windows)
    connection = Http2Connection(pool)
    connection.codec.initiate()
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    events = server.receive_data(connection.codec.data_to_send())
    settings = next(e for e in events if isinstance(e, h2.events.RemoteSettingsChanged))
    changed = {code: setting.new_value for code, setting in settings.changed_settings.items()}
    assert changed[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 100_000
    assert changed[h2.settings.SettingCodes.HEADER_TABLE_SIZE] == 0
    # The connection window grows from RFC 9113's 65535 by a WINDOW_UPDATE on stream 0.
    update = next(e for e in events if isinstance(e, h2.events.WindowUpdated))
    assert (update.stream_id, update.delta) == (0, 3_000_000 - 65535)
