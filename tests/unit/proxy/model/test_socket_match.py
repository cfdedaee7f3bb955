"""Cluster transport_socket_matches -> model, and Envoy's per-endpoint choice
(cluster.proto TransportSocketMatch; TransportSocketMatcherImpl::resolve)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.model.cluster import Cluster, translate_cluster
from proxy.model.metadata import socket_metadata
from tests.integration.proxy.helpers import UPSTREAM_TLS

TLS = {"name": "envoy.transport_sockets.tls",
       "typed_config": {"@type": UPSTREAM_TLS, "sni": "mtls.test"}}
RAW = {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}


def _cluster(**fields: Any) -> Cluster:
    body = {"name": "mixed", "connect_timeout": "1s", **fields}
    return translate_cluster(parse_message(body, cluster_pb2.Cluster))


def _meta(values: dict[str, Any] | None) -> Any:
    if values is None:
        return None
    message = parse_message({"filter_metadata": {"envoy.transport_socket_match": values}},
                            base_pb2.Metadata)
    return socket_metadata(message)


ISTIO = {"transport_socket_matches": [
    {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": TLS},
    {"name": "tlsMode-disabled", "match": {}, "transport_socket": RAW}]}


def test_first_match_whose_labels_are_a_subset_of_the_endpoint_metadata() -> None:
    model = _cluster(**ISTIO)
    chosen = model.socket_for(_meta({"tlsMode": "istio", "other": 1}), None)
    assert chosen.name == "tlsMode-istio"
    assert chosen.transport is not None and chosen.transport.sni == "mtls.test"
    # An empty match matches every endpoint, with or without metadata.
    assert model.socket_for(None, None).name == "tlsMode-disabled"
    assert model.socket_for(_meta({"tlsMode": "disabled"}), None).transport is None


def test_no_match_falls_back_to_the_cluster_transport_socket() -> None:
    model = _cluster(transport_socket_matches=[
        {"name": "tls", "match": {"tlsMode": "istio"}, "transport_socket": TLS}])
    chosen = model.socket_for(_meta({"tlsMode": "other"}), None)
    assert (chosen.name, chosen.transport) == ("default", None)
    assert model.socket_for(None, None).name == "default"
    # A key present elsewhere in the struct but missing here does not match.
    assert model.socket_for(_meta({"mode": "istio"}), None).name == "default"


def test_endpoint_metadata_is_tried_against_every_match_before_the_locality() -> None:
    model = _cluster(transport_socket_matches=[
        {"name": "by-zone", "match": {"zone": "a"}, "transport_socket": TLS},
        {"name": "by-endpoint", "match": {"tls": True}}])
    # by-zone comes first but only the locality has zone=a: the endpoint's match wins.
    assert model.socket_for(_meta({"tls": True}), _meta({"zone": "a"})).name == "by-endpoint"
    assert model.socket_for(_meta({"x": "y"}), _meta({"zone": "a"})).name == "by-zone"


def test_values_compare_by_kind_as_envoys_value_util() -> None:
    model = _cluster(transport_socket_matches=[
        {"name": "flag", "match": {"on": True}, "transport_socket": TLS},
        {"name": "list", "match": {"tags": ["a", "b"]}, "transport_socket": TLS}])
    assert model.socket_for(_meta({"on": 1}), None).name == "default"  # 1 is not true
    assert model.socket_for(_meta({"on": "true"}), None).name == "default"
    assert model.socket_for(_meta({"on": True}), None).name == "flag"
    # Lists compare whole (list_as_any is false for transport sockets).
    assert model.socket_for(_meta({"tags": ["a"]}), None).name == "default"
    assert model.socket_for(_meta({"tags": ["a", "b"]}), None).name == "list"


def test_endpoint_and_locality_metadata_are_read_from_the_assignment() -> None:
    model = _cluster(load_assignment={"cluster_name": "mixed", "endpoints": [{
        "metadata": {"filter_metadata": {"envoy.transport_socket_match": {"zone": "a"}}},
        "lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                        "port_value": 1}}},
            "metadata": {"filter_metadata": {
                "envoy.transport_socket_match": {"tlsMode": "istio"},
                "istio": {"workload": "w"}}}}]}]})
    assert model.load_assignment is not None
    group = model.load_assignment.localities[0]
    assert group.socket_metadata == (("zone", ("string", "a")),)
    assert group.endpoints[0].socket_metadata == (("tlsMode", ("string", "istio")),)


@pytest.mark.parametrize(("fields", "field"), [
    ({"transport_socket_matcher": {"on_no_match": {"action": {
        "name": "x", "typed_config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                      "value": "tls"}}}}}, "transport_socket_matcher"),
    ({"transport_socket_matches": [{"match": {}, "transport_socket": TLS}]},
     "transport_socket_matches[0].name"),
    ({"transport_socket_matches": [{"name": "q", "transport_socket": {
        "name": "envoy.transport_sockets.quic", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.quic.v3"
                     ".QuicUpstreamTransport",
            "upstream_tls_context": {}}}}]},
     "transport_socket_matches[0].transport_socket"),
    ({"transport_socket_matches": [{"name": "t", "transport_socket": {
        "name": "tls", "typed_config": {"@type": UPSTREAM_TLS, "sni": "a",
                                        "allow_renegotiation": True}}}]},
     "transport_socket_matches[0].transport_socket.allow_renegotiation"),
])
def test_refusals_name_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _cluster(**fields)
    assert caught.value.field == field


def test_grpc_health_checks_over_a_tls_match_are_refused() -> None:
    with pytest.raises(ConfigError, match="gRPC health checks over a TLS"):
        _cluster(**ISTIO, health_checks=[{
            "timeout": "1s", "interval": "1s", "unhealthy_threshold": 1,
            "healthy_threshold": 1, "grpc_health_check": {}}])


def test_health_check_match_criteria_are_kept() -> None:
    model = _cluster(**ISTIO, health_checks=[{
        "timeout": "1s", "interval": "1s", "unhealthy_threshold": 1, "healthy_threshold": 1,
        "tcp_health_check": {}, "transport_socket_match_criteria": {"tlsMode": "istio"}}])
    criteria = model.health_checks[0].socket_match_criteria
    assert model.socket_for(criteria, None).name == "tlsMode-istio"
