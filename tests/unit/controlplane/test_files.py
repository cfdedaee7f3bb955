"""File source: parsing, validation that names file/resource/field, node groups, last good."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controlplane.cache import DEFAULT_GROUP, SnapshotCache
from controlplane.sources.files import FileSource, load_snapshots
from protos.errors import ConfigError
from protos.registry import CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION
from tests.unit.controlplane.builders import cluster, endpoints, listener, route

GOOD = [cluster("a"), endpoints("a", 1), listener("http", "main"), route("main", "a")]


def write(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"resources": resources}))
    return path


def error_for(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_snapshots(path)
    return caught.value


def test_a_good_file_becomes_one_shared_snapshot(tmp_path):
    snapshots = load_snapshots(write(tmp_path / "all.yaml", GOOD))
    shared = snapshots[DEFAULT_GROUP]
    assert list(shared.of_type(CLUSTER).resources) == ["a"]
    assert list(shared.of_type(LISTENER).resources) == ["http"]


def test_json_files_work_too(tmp_path):
    (tmp_path / "all.json").write_text(json.dumps({"resources": GOOD}))
    assert list(load_snapshots(tmp_path)[DEFAULT_GROUP].of_type(ROUTE_CONFIGURATION)
                .resources) == ["main"]


def test_malformed_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("resources: [ {oops\n")
    error = error_for(path)
    assert str(path) in str(error) and "malformed" in str(error)


def test_unknown_type_names_the_field(tmp_path):
    path = write(tmp_path / "x.yaml", [{"@type": "type.googleapis.com/no.Such", "name": "x"}])
    error = error_for(path)
    assert error.field == "resources[0].@type" and "no.Such" in str(error)


def test_bad_field_value_names_file_resource_and_field(tmp_path):
    bad = endpoints("a", 1)
    bad["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"][
        "port_value"] = 70000
    error = error_for(write(tmp_path / "e.yaml", [cluster("a"), bad]))
    assert error.source.endswith("e.yaml") and error.resource == "a"
    assert error.field == ("resources[1].endpoints[0].lb_endpoints[0].endpoint.address"
                           ".socket_address.port_value")


def test_wrongly_typed_value_is_rejected(tmp_path):
    bad = cluster("a", timeout="soon")
    error = error_for(write(tmp_path / "c.yaml", [bad, endpoints("a", 1)]))
    assert error.resource == "a" and "resources[0]" in error.field


def test_duplicate_names_are_rejected(tmp_path):
    write(tmp_path / "one.yaml", [cluster("a"), endpoints("a", 1)])
    write(tmp_path / "two.yaml", [cluster("a")])
    error = error_for(tmp_path)
    assert "duplicate cluster name" in str(error) and error.source.endswith("two.yaml")


def test_route_naming_a_missing_cluster_is_a_dangling_reference(tmp_path):
    path = write(tmp_path / "r.yaml", [*GOOD[:3], route("main", "a", "ghost")])
    error = error_for(path)
    assert error.resource == "main" and "ghost" in str(error)
    assert error.field == "resources[3].virtual_hosts[0].routes[1].route.cluster"


def test_listener_naming_a_missing_route_and_cluster_without_endpoints(tmp_path):
    error = error_for(write(tmp_path / "l.yaml", [*GOOD[:3]]))
    assert "RouteConfiguration 'main'" in str(error)
    assert error.field.endswith("rds.route_config_name")
    error = error_for(write(tmp_path / "c.yaml", [cluster("a")]))
    assert "ClusterLoadAssignment 'a'" in str(error)


def test_node_group_folders_override_and_add(tmp_path):
    write(tmp_path / "shared.yaml", GOOD)
    write(tmp_path / "edge" / "more.yaml",
          [endpoints("a", 2), cluster("extra"), endpoints("extra", 3)])
    snapshots = load_snapshots(tmp_path)
    assert sorted(snapshots) == [DEFAULT_GROUP, "edge"]
    edge, shared = snapshots["edge"], snapshots[DEFAULT_GROUP]
    assert sorted(edge.of_type(CLUSTER).resources) == ["a", "extra"]
    assert (edge.of_type(CLUSTER_LOAD_ASSIGNMENT).resources["a"].version
            != shared.of_type(CLUSTER_LOAD_ASSIGNMENT).resources["a"].version)
    assert edge.of_type(LISTENER).resources["http"] is not None


def test_file_source_keeps_the_last_good_snapshot(tmp_path):
    path = write(tmp_path / "all.yaml", GOOD)
    cache = SnapshotCache()
    errors: list[ConfigError] = []
    source = FileSource(path, cache, on_error=errors.append)
    assert source.poll() and not source.poll()  # unchanged files: nothing new
    good = cache.groups[DEFAULT_GROUP]
    path.write_text("resources: [ {")
    assert not source.poll()
    assert cache.groups[DEFAULT_GROUP] is good and len(errors) == 1
    write(path, [*GOOD, cluster("b"), endpoints("b", 2)])
    assert source.poll() and source.last_error is None
    assert sorted(cache.groups[DEFAULT_GROUP].of_type(CLUSTER).resources) == ["a", "b"]


def test_unsupported_fields_are_refused_by_name(tmp_path):
    scoped = listener("http", "main")
    hcm = scoped["filter_chains"][0]["filters"][0]["typed_config"]
    del hcm["rds"]
    hcm["scoped_routes"] = {"name": "s"}
    error = error_for(write(tmp_path / "l.yaml", [scoped]))
    assert error.field.endswith("typed_config.scoped_routes") and "not supported" in str(error)


def test_secret_and_tcp_proxy_references_are_checked(tmp_path):
    tls_cluster = cluster("a")
    tls_cluster["transport_socket"] = {"name": "tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                 "UpstreamTlsContext",
        "common_tls_context": {"tls_certificate_sds_secret_configs": [
            {"name": "client-cert", "sds_config": {"ads": {}}}]}}}
    error = error_for(write(tmp_path / "s.yaml", [tls_cluster, endpoints("a", 1)]))
    assert "Secret 'client-cert'" in str(error)
    assert error.field.endswith("tls_certificate_sds_secret_configs[0].name")
    secret = {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
              "name": "client-cert", "tls_certificate": {
                  "certificate_chain": {"inline_string": "PEM"},
                  "private_key": {"inline_string": "KEY"}}}
    write(tmp_path / "s.yaml", [tls_cluster, endpoints("a", 1), secret])
    assert "client-cert" in load_snapshots(tmp_path / "s.yaml")[DEFAULT_GROUP].of_type(
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret").resources
    tcp = {"@type": CLUSTER.replace("cluster.v3.Cluster", "listener.v3.Listener"), "name": "tcp",
           "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9000}},
           "filter_chains": [{"filters": [{"name": "tcp", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3."
                        "TcpProxy", "stat_prefix": "tcp", "cluster": "nowhere"}}]}]}
    error = error_for(write(tmp_path / "t.yaml", [tcp]))
    assert "Cluster 'nowhere'" in str(error) and error.field.endswith("typed_config.cluster")


def test_an_unknown_nested_typed_config_is_named(tmp_path):
    bad = listener("http", "main")
    bad["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]["typed_config"][
        "@type"] = "type.googleapis.com/no.such.Filter"
    error = error_for(write(tmp_path / "l.yaml", [*GOOD[:2], bad, GOOD[3]]))
    assert "no.such.Filter" in str(error) and error.resource == "http"


def test_undecodable_or_odd_files_are_errors_not_crashes(tmp_path):
    path = write(tmp_path / "all.yaml", GOOD)
    errors: list[ConfigError] = []
    source = FileSource(tmp_path, SnapshotCache(), on_error=errors.append)
    assert source.poll()
    for content in (b"\xff\xfe\x00binary", b"resources: 7", b"- just\n- a list",
                    b"resources: [7]", b"resources: [{'@type': 5}]"):
        path.write_bytes(content)
        assert not source.poll()
        assert errors[-1].source.endswith("all.yaml") or str(tmp_path) in errors[-1].source
    assert len(errors) == 5


def test_two_listeners_on_one_address_are_refused(tmp_path):
    error = error_for(write(tmp_path / "l.yaml",
                            [*GOOD, listener("second", "main")]))  # both on 127.0.0.1:10000
    assert error.resource == "second" and "already bound by listener 'http'" in str(error)
    assert error.field == "resources[4].address.socket_address"


def test_config_needing_an_xds_type_we_do_not_serve_is_refused(tmp_path):
    ecds = listener("http", "main")
    ecds["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0] = {
        "name": "dynamic", "config_discovery": {
            "config_source": {"ads": {}},
            "type_urls": ["type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"]}}
    error = error_for(write(tmp_path / "l.yaml", [*GOOD[:2], ecds, GOOD[3]]))
    assert "ECDS" in str(error)
    assert error.field.endswith("typed_config.http_filters[0].config_discovery")
    vhds = route("main", "a")
    vhds["vhds"] = {"config_source": {"ads": {}}}
    error = error_for(write(tmp_path / "l.yaml", [*GOOD[:3], vhds]))
    assert "VHDS" in str(error) and error.field == "resources[3].vhds"


def test_a_kubernetes_configmap_volume_layout_is_followed(tmp_path):
    first = write(tmp_path / "..2026_01" / "mesh.yaml", GOOD)
    (tmp_path / "..data").symlink_to(first.parent.name)
    (tmp_path / "mesh.yaml").symlink_to("..data/mesh.yaml")
    cache = SnapshotCache()
    source = FileSource(tmp_path, cache)
    assert source.poll() and list(cache.groups) == [DEFAULT_GROUP]  # hidden dirs: no groups
    write(tmp_path / "..2026_02" / "mesh.yaml", [*GOOD, cluster("b"), endpoints("b", 2)])
    (tmp_path / "..data_tmp").symlink_to("..2026_02")
    (tmp_path / "..data_tmp").replace(tmp_path / "..data")  # the kubelet's atomic swap
    assert source.poll()
    assert sorted(cache.groups[DEFAULT_GROUP].of_type(CLUSTER).resources) == ["a", "b"]


def test_only_changed_files_are_parsed_again(tmp_path):
    write(tmp_path / "clusters.yaml", [cluster("a"), endpoints("a", 1)])
    routes = write(tmp_path / "routes.yaml", [listener("http", "main"), route("main", "a")])
    source = FileSource(tmp_path, SnapshotCache())
    assert source.poll() and source.files_parsed == 2
    write(routes, [listener("http", "main", 10001), route("main", "a")])
    assert source.poll() and source.files_parsed == 3


def test_a_group_is_checked_against_the_shared_set_it_is_laid_over(tmp_path):
    write(tmp_path / "shared.yaml", GOOD)  # listener 'http' on 127.0.0.1:10000
    write(tmp_path / "edge" / "own.yaml", [listener("http", "main", 10000)])  # replaces it
    assert sorted(load_snapshots(tmp_path)) == [DEFAULT_GROUP, "edge"]
    write(tmp_path / "edge" / "own.yaml", [listener("second", "main", 10000)])
    error = error_for(tmp_path)
    assert error.resource == "second" and "already bound by listener 'http'" in str(error)
    write(tmp_path / "edge" / "own.yaml", [route("main", "a", "ghost")])
    error = error_for(tmp_path)
    assert "Cluster 'ghost'" in str(error) and error.source.endswith("own.yaml")
