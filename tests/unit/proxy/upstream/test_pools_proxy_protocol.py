"""HTTP pools refuse a cluster whose transport socket asks for an upstream PROXY header,
instead of silently sending pooled requests without it (tcp_proxy implements it). Routes that
name such a cluster are refused at config time (proxy.model.http_clusters); this is the
backstop for a cluster chosen per request (cluster_header)."""

from __future__ import annotations

import types

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.upstream.host import Host
from proxy.upstream.pools import PoolManager
from proxy.upstream.pools.base import ConnectFailedError

PROXY_PROTOCOL_CLUSTER = {
    "name": "pp",
    "connect_timeout": "1s",
    "load_assignment": {"cluster_name": "pp", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": 9}}}}]}]},
    "transport_socket": {
        "name": "envoy.transport_sockets.upstream_proxy_protocol",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.proxy_protocol.v3"
                     ".ProxyProtocolUpstreamTransport",
            "config": {"version": "V1"},
            "transport_socket": {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3"
                         ".RawBuffer"}},
        },
    },
}


def test_http_pool_for_a_proxy_protocol_cluster_fails_the_attempt_visibly() -> None:
    cluster = translate_cluster(parse_message(PROXY_PROTOCOL_CLUSTER, cluster_pb2.Cluster))
    assert cluster.upstream_tls is not None and cluster.upstream_tls.proxy_protocol_version == 1
    runtime = types.SimpleNamespace(config=cluster)
    manager = PoolManager()
    with pytest.raises(ConnectFailedError, match="PROXY protocol"):
        manager.pool_for(runtime, Host("127.0.0.1", 9))
    assert repr(manager) == "PoolManager(0 pools)"
