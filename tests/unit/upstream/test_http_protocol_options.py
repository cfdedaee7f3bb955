"""The cluster's HttpProtocolOptions as the HTTP pools read them: what we honour is
translated, anything else set is refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.cluster import Cluster, translate_cluster
from proxy.upstream.pools import upstream_protocol

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


@pytest.mark.parametrize(("options", "field"), [
    ({"explicit_http_config": {"http_protocol_options": {"allow_chunked_length": True}}},
     "explicit_http_config.http_protocol_options.allow_chunked_length"),
    ({"explicit_http_config": {"http2_protocol_options": {"hpack_table_size": 0}}},
     "explicit_http_config.http2_protocol_options.hpack_table_size"),
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
