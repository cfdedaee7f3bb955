"""tcp_proxy config translation and the weighted cluster pick."""

from __future__ import annotations

from collections import Counter

import pytest
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.network.tcp_proxy import (
    DEFAULT_IDLE_TIMEOUT,
    WeightedCluster,
    choose_cluster,
    translate_tcp_proxy,
)


def translate(body: dict):
    return translate_tcp_proxy(parse_message(body, tcp_proxy_pb2.TcpProxy))


def test_defaults_follow_envoy() -> None:
    config = translate({"stat_prefix": "s", "cluster": "c"})
    assert config.clusters == (WeightedCluster("c", 1),)
    assert config.idle_timeout == DEFAULT_IDLE_TIMEOUT
    assert config.max_connect_attempts == 1
    assert not config.hash_source_ip


def test_options() -> None:
    config = translate({"stat_prefix": "s", "idle_timeout": "0s", "max_connect_attempts": 3,
                        "hash_policy": [{"source_ip": {}}],
                        "weighted_clusters": {"clusters": [{"name": "a", "weight": 1},
                                                           {"name": "b", "weight": 2}]}})
    assert config.idle_timeout is None  # 0 disables it
    assert config.max_connect_attempts == 3
    assert config.hash_source_ip
    assert config.cluster_names == ("a", "b")


@pytest.mark.parametrize(("body", "field"), [
    ({"cluster": "c"}, "stat_prefix"),
    ({"stat_prefix": "s"}, "cluster"),
    ({"stat_prefix": "s", "cluster": "c", "tunneling_config": {"hostname": "h"}},
     "tunneling_config"),
    ({"stat_prefix": "s", "cluster": "c", "hash_policy": [{"filter_state": {"key": "k"}}]},
     "hash_policy[0].filter_state"),
])
def test_errors_name_the_field(body: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        translate(body)
    assert caught.value.field == field


def test_weighted_pick_is_proportional_over_every_draw() -> None:
    clusters = (WeightedCluster("a", 1), WeightedCluster("b", 3))
    counts = Counter(choose_cluster(clusters, draw) for draw in range(400))
    assert counts == {"a": 100, "b": 300}
    assert choose_cluster(clusters, 0) == "a"
    assert choose_cluster(clusters, 1) == "b"
