"""The cluster's HttpProtocolOptions as the HTTP pools read them: what we honour is
translated, anything else set is refused naming the field."""

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
from proxy.upstream.host import Host
from proxy.upstream.pools import upstream_protocol
from proxy.upstream.pools.http2 import Http2Connection, Http2Pool, Http2Windows

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
])
def test_anything_else_is_refused_by_name(options: dict[str, Any], field: str) -> None:
    # Refused when the cluster is translated (a NACK or start-up error), not on first use.
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _cluster(options)


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
