"""Cluster and ClusterLoadAssignment translation: values, defaults, and refusals by name."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.cluster import DiscoveryType, LbPolicy, LeastRequestConfig, RingHashConfig
from proxy.model.endpoint import EdsHealth, translate_cluster_load_assignment
from proxy.model.health import CheckKind
from tests.unit.proxy.upstream.builders import cluster, static_endpoints

HC = {"timeout": "1s", "interval": "2s", "unhealthy_threshold": 3, "healthy_threshold": 2}


def _assignment(body: dict):
    return translate_cluster_load_assignment(
        parse_message(body, endpoint_pb2.ClusterLoadAssignment))


def test_static_cluster_with_defaults() -> None:
    model = cluster(load_assignment={"cluster_name": "backend",
                                     "endpoints": [static_endpoints(1, 2)]})
    assert model.type is DiscoveryType.STATIC
    assert model.connect_timeout == 1.0
    assert model.lb_policy is LbPolicy.ROUND_ROBIN
    assert model.healthy_panic_threshold == 50.0
    assert [ep.port for ep in model.load_assignment.all_endpoints()] == [1, 2]


def test_lb_configs() -> None:
    model = cluster(lb_policy="LEAST_REQUEST",
                    least_request_lb_config={"choice_count": 4,
                                             "active_request_bias": {"default_value": 0.5,
                                                                     "runtime_key": ""}})
    assert (model.least_request.choice_count, model.least_request.active_request_bias) == (4, 0.5)
    model = cluster(lb_policy="RING_HASH", ring_hash_lb_config={
        "minimum_ring_size": 64, "maximum_ring_size": 4096})
    assert (model.ring_hash.minimum_ring_size, model.ring_hash.maximum_ring_size) == (64, 4096)
    assert cluster(lb_policy="MAGLEV", maglev_lb_config={"table_size": 5003}).maglev.table_size \
        == 5003


@pytest.mark.parametrize("fields", [
    {"lb_policy": "ROUND_ROBIN", "ring_hash_lb_config": {"hash_function": "MURMUR_HASH_2"}},
    {"lb_policy": "LEAST_REQUEST", "round_robin_lb_config": {"slow_start_config": {}}},
])
def test_config_of_another_lb_policy_is_accepted_without_effect(fields: dict[str, Any]) -> None:
    """Envoy 1.40 accepts a *_lb_config of another policy and it has no effect there."""
    model = cluster(**fields)
    assert model.ring_hash == RingHashConfig() and model.least_request == LeastRequestConfig()


@pytest.mark.parametrize(("window", "accepted"), [
    (None, True), ("0s", True), ("1s", True), ("5s", False), ("0.2s", False)])
def test_update_merge_window_only_as_we_apply_updates(window: str | None,
                                                      accepted: bool) -> None:
    """Host updates apply at once: 0 (off) is exact, unset or 1 s is Envoy's default (it only
    delays bursts within a second); any other value is refused by name, not ignored."""
    common = {} if window is None else {"update_merge_window": window}
    if accepted:
        cluster(common_lb_config=common)
        return
    with pytest.raises(ConfigError) as caught:
        cluster(common_lb_config=common)
    assert caught.value.field == "common_lb_config.update_merge_window"


def test_unsupported_enum_value_is_named_not_numbered() -> None:
    with pytest.raises(ConfigError) as caught:
        cluster(lb_policy="CLUSTER_PROVIDED")
    assert caught.value.field == "lb_policy"
    assert "CLUSTER_PROVIDED" in caught.value.message and "6" not in caught.value.message


@pytest.mark.parametrize(("fields", "named"), [
    ({"lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 1000}}, "table_size"),
    ({"lb_policy": "RING_HASH", "ring_hash_lb_config": {"hash_function": "MURMUR_HASH_2"}},
     "hash_function"),
    ({"lb_policy": "RING_HASH", "ring_hash_lb_config": {"minimum_ring_size": 100,
                                                        "maximum_ring_size": 10}},
     "minimum_ring_size"),
    ({"lb_policy": "CLUSTER_PROVIDED"}, "lb_policy"),
    ({"type": "ORIGINAL_DST"}, "type"),
    ({"lb_subset_config": {"fallback_policy": "ANY_ENDPOINT"}}, "lb_subset_config"),
    ({"upstream_bind_config": {"source_address": {"address": "127.0.0.1",
                                                   "port_value": 0}}},
     "upstream_bind_config"),
    ({"lb_policy": "MAGLEV", "common_lb_config": {"locality_weighted_lb_config": {}}},
     "locality_weighted_lb_config"),
    ({"common_lb_config": {"zone_aware_lb_config": {"min_cluster_size": 3}}},
     "zone_aware_lb_config"),
    ({"health_checks": [{**HC, "tcp_health_check": {}}, {**HC, "tcp_health_check": {}}]},
     "health_checks[1]"),
    ({"health_checks": [{**HC, "http_health_check": {"path": "/",
                                                     "codec_client_type": "HTTP2"}}]},
     "codec_client_type"),
    ({"health_checks": [{**HC, "event_log_path": "/tmp/x", "tcp_health_check": {}}]},
     "event_log_path"),
    ({"outlier_detection": {"monitors": [{"name": "x"}]}}, "monitors"),
    ({"track_cluster_stats": {"request_response_sizes": True}}, "track_cluster_stats"),
    ({"health_checks": [{**HC, "grpc_health_check": {}}], "transport_socket": {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/"
                     "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}}},
     "grpc_health_check"),
    ({"type": "STRICT_DNS"}, "load_assignment"),
    ({"type": "EDS", "eds_cluster_config": {"eds_config": {"path_config_source": {
        "path": "/tmp/eds.yaml"}}}}, "eds_config"),
    ({"load_assignment": {"cluster_name": "b", "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": "example.com",
                                                     "port_value": 80}}}}]}]}},
     "load_assignment"),
])
def test_unsupported_or_invalid_fields_are_named(fields: dict, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cluster(**fields)
    assert named in str(caught.value)
    assert "backend" in str(caught.value)  # the resource is named too


def test_health_check_translation() -> None:
    model = cluster(health_checks=[{**HC, "no_traffic_interval": "3s", "interval_jitter": "1s",
                                    "http_health_check": {"path": "/healthz", "host": "svc",
                                                          "expected_statuses": [
                                                              {"start": 200, "end": 300}]}}])
    check = model.health_checks[0]
    assert check.kind is CheckKind.HTTP and check.http is not None
    assert (check.timeout, check.interval, check.unhealthy_threshold,
            check.healthy_threshold) == (1.0, 2.0, 3, 2)
    assert check.no_traffic_interval == 3.0 and check.interval_jitter == 1.0
    assert check.http.expects(204) and not check.http.expects(300)
    tcp = cluster(health_checks=[{**HC, "tcp_health_check": {
        "send": {"text": "50494e47"}, "receive": [{"text": "504f4e47"}]}}]).health_checks[0]
    assert tcp.tcp is not None and (tcp.tcp.send, tcp.tcp.receive) == (b"PING", (b"PONG",))
    grpc = cluster(health_checks=[{**HC, "grpc_health_check": {"service_name": "s"}}])
    assert grpc.health_checks[0].grpc.service_name == "s"


def test_outlier_detection_defaults_follow_envoy() -> None:
    outlier = cluster(outlier_detection={"base_ejection_time": "400s"}).outlier_detection
    assert outlier is not None
    assert outlier.consecutive_5xx == 5 and outlier.enforcing_consecutive_gateway_failure == 0
    assert outlier.max_ejection_percent == 10 and outlier.interval == 10.0
    assert outlier.max_ejection_time == 400.0  # max(300 s, base) when unset


def test_endpoint_assignment_translation() -> None:
    assignment = _assignment({
        "cluster_name": "svc",
        "endpoints": [
            {"locality": {"region": "eu", "zone": "a"}, "priority": 1,
             "load_balancing_weight": 3, "lb_endpoints": [
                 {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1",
                                                              "port_value": 80}},
                               "health_check_config": {"port_value": 8080}},
                  "health_status": "DEGRADED", "load_balancing_weight": 7}]}],
        "policy": {"overprovisioning_factor": 200}})
    group = assignment.localities[0]
    endpoint = group.endpoints[0]
    assert (group.priority, group.weight, str(group.locality)) == (1, 3, "eu/a")
    assert (endpoint.weight, endpoint.health_status, endpoint.health_check_port) == (
        7, EdsHealth.DEGRADED, 8080)
    assert assignment.overprovisioning_factor == 200
    assert assignment.priority_count == 2


@pytest.mark.parametrize(("body", "named"), [
    ({"cluster_name": "s", "policy": {"drop_overloads": [{"category": "x", "drop_percentage": {
        "numerator": 1}}]}}, "drop_overloads"),
    ({"cluster_name": "s", "policy": {"weighted_priority_health": True}},
     "weighted_priority_health"),
    ({"cluster_name": "s", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
        "pipe": {"path": "/tmp/s"}}}}]}]}, "pipe"),
    ({"cluster_name": "s", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "10.0.0.1", "port_value": 80, "protocol": "UDP"}}}}]}]},
     "protocol"),
    ({"cluster_name": "s", "endpoints": [{"leds_cluster_locality_config": {}}]},
     "leds_cluster_locality_config"),
])
def test_endpoint_refusals(body: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        _assignment(body)


def _typed_policy(*configs: dict) -> dict:
    return {"policies": [{"typed_extension_config": {"name": f"p{index}", "typed_config": c}}
                         for index, c in enumerate(configs)]}


LB = "type.googleapis.com/envoy.extensions.load_balancing_policies."


def test_typed_load_balancing_policy_first_supported_wins() -> None:
    model = cluster(load_balancing_policy=_typed_policy(
        {"@type": "type.googleapis.com/envoy.extensions.load_balancing_policies."
                  "client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin"},
        {"@type": LB + "least_request.v3.LeastRequest", "choice_count": 3,
         "locality_lb_config": {"locality_weighted_lb_config": {}}}))
    assert model.lb_policy is LbPolicy.LEAST_REQUEST
    assert model.least_request.choice_count == 3 and model.locality_weighted_lb
    ring = cluster(load_balancing_policy=_typed_policy(
        {"@type": LB + "ring_hash.v3.RingHash", "hash_function": "XX_HASH",
         "minimum_ring_size": 128, "consistent_hashing_lb_config": {
             "use_hostname_for_hashing": True}}))
    assert ring.lb_policy is LbPolicy.RING_HASH
    assert ring.ring_hash == RingHashConfig(128, 8 * 1024 * 1024, True)
    maglev = cluster(load_balancing_policy=_typed_policy(
        {"@type": LB + "maglev.v3.Maglev", "table_size": 5003}))
    assert (maglev.lb_policy, maglev.maglev.table_size) == (LbPolicy.MAGLEV, 5003)
    assert cluster(load_balancing_policy=_typed_policy(
        {"@type": LB + "random.v3.Random"})).lb_policy is LbPolicy.RANDOM


@pytest.mark.parametrize(("policy", "named"), [
    ({"@type": LB + "round_robin.v3.RoundRobin", "slow_start_config": {}}, "slow_start_config"),
    ({"@type": LB + "ring_hash.v3.RingHash", "hash_balance_factor": 150},
     "hash_balance_factor"),
    ({"@type": LB + "ring_hash.v3.RingHash", "hash_function": "MURMUR_HASH_2"},
     "hash_function"),
    ({"@type": LB + "random.v3.Random",
      "locality_lb_config": {"zone_aware_lb_config": {}}}, "zone_aware_lb_config"),
    ({"@type": LB + "pick_first.v3.PickFirst"}, "load_balancing_policy"),
])
def test_typed_load_balancing_policy_refusals(policy: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        cluster(load_balancing_policy=_typed_policy(policy))


def test_typed_policy_cannot_be_mixed_with_the_enum() -> None:
    with pytest.raises(ConfigError, match="lb_policy"):
        cluster(lb_policy="MAGLEV", load_balancing_policy=_typed_policy(
            {"@type": LB + "random.v3.Random"}))
