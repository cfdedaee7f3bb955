"""protos: YAML/JSON -> protobuf with errors naming the file, the resource and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from protos import loader, registry
from protos.errors import ConfigError, unsupported

TCP_PROXY = registry.TYPE_PREFIX + "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"


def test_parse_any_resource_resolves_nested_typed_config() -> None:
    listener = loader.parse_any_resource({
        "@type": registry.LISTENER, "name": "l1",
        "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
            "@type": TCP_PROXY, "stat_prefix": "s", "cluster": "c"}}]}],
    })
    assert isinstance(listener, listener_pb2.Listener)
    inner = loader.unpack_any(listener.filter_chains[0].filters[0].typed_config)
    assert isinstance(inner, tcp_proxy_pb2.TcpProxy) and inner.cluster == "c"


def test_unknown_top_level_type_names_the_index() -> None:
    with pytest.raises(ConfigError) as caught:
        loader.parse_any_resource({"@type": "type.googleapis.com/no.Such"}, source="a.yaml",
                                  index=3)
    assert str(caught.value) == ("a.yaml: field 'resources[3].@type': unknown @type "
                                 "'type.googleapis.com/no.Such'")


def test_unknown_nested_type_names_file_resource_and_field() -> None:
    with pytest.raises(ConfigError) as caught:
        loader.parse_any_resource({
            "@type": registry.LISTENER, "name": "l1",
            "filter_chains": [{"filters": [{"name": "x", "typed_config": {
                "@type": "type.googleapis.com/no.Such"}}]}],
        }, source="b.yaml")
    error = caught.value
    assert (error.source, error.resource) == ("b.yaml", "l1")
    assert error.field == "resources[0].filter_chains[0].filters[0].typed_config.@type"


def test_bad_field_value_and_unknown_field_are_errors() -> None:
    with pytest.raises(ConfigError, match="connect_timeout"):
        loader.parse_message({"name": "c", "connect_timeout": "soon"}, cluster_pb2.Cluster)
    with pytest.raises(ConfigError, match="no_such_field"):
        loader.parse_message({"name": "c", "no_such_field": 1}, cluster_pb2.Cluster)


def test_read_document_reports_malformed_yaml_with_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("resources: [\n  - {name: x\n")
    with pytest.raises(ConfigError) as caught:
        loader.read_document(bad)
    assert caught.value.source == str(bad) and "malformed" in caught.value.message


def test_within_prefixes_fields_and_keeps_innermost_names() -> None:
    inner = ConfigError("bad", field="[2].cluster", resource="r1")
    outer = inner.within(field="routes", resource="ignored", source="f.yaml")
    assert str(outer) == "f.yaml: resource 'r1': field 'routes[2].cluster': bad"
    assert "not supported" in str(unsupported("x.y"))


def test_enum_names_in_any_case_as_envoy_parses_them() -> None:
    """Envoy parses with case_insensitive_enum_parsing: a value that is not an enum name is
    tried in upper case (`auto`, `Auto`), inside typed_config and repeated fields too."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    cluster = loader.parse_message({"name": "c", "type": "strict_dns", "lb_policy": "Maglev",
                                    "dns_lookup_family": "v4_only"}, cluster_pb2.Cluster)
    assert (cluster.type, cluster.lb_policy, cluster.dns_lookup_family) == (
        cluster_pb2.Cluster.STRICT_DNS, cluster_pb2.Cluster.MAGLEV, cluster_pb2.Cluster.V4_ONLY)
    listener = loader.parse_any_resource({
        "@type": registry.LISTENER, "name": "l1", "trafficDirection": "outbound",
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": registry.TYPE_PREFIX + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name,
            "stat_prefix": "s", "codec_type": "aUtO",
            "upgrade_configs": [{"upgrade_type": "websocket"}],
            "server_header_transformation": "pass_through"}}]}]})
    assert isinstance(listener, listener_pb2.Listener)
    assert listener.traffic_direction == 2  # OUTBOUND
    inner = loader.unpack_any(listener.filter_chains[0].filters[0].typed_config)
    assert isinstance(inner, hcm_pb2.HttpConnectionManager)
    assert inner.codec_type == hcm_pb2.HttpConnectionManager.AUTO
    assert inner.server_header_transformation == hcm_pb2.HttpConnectionManager.PASS_THROUGH
    assert inner.upgrade_configs[0].upgrade_type == "websocket"  # a string, left alone


@pytest.mark.parametrize("value", ["http_2", " AUTO", "auto "])
def test_enum_values_envoy_refuses_stay_errors(value: str) -> None:
    """Only upper-casing is tried, as protobuf's parser: `http_2` or padded names fail."""
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    with pytest.raises(ConfigError, match=r"codec_type|Invalid enum"):
        loader.parse_message({"stat_prefix": "s", "codec_type": value},
                             hcm_pb2.HttpConnectionManager)


def test_enum_case_in_struct_metadata_is_kept() -> None:
    """Struct values (metadata) are not proto enums: their strings are kept as written."""
    cluster = loader.parse_message({"name": "c", "metadata": {"filter_metadata": {
        "x": {"type": "strict_dns"}}}}, cluster_pb2.Cluster)
    assert cluster.metadata.filter_metadata["x"]["type"] == "strict_dns"
