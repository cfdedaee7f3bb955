"""Differential: `<cluster>.<match>.total_match_count` over EDS updates, Envoy 1.40 vs ours.

Envoy reads the ClusterLoadAssignment from a watched file (path_config_source, atomic
rename); our ClusterManager applies the same assignment in-process. Envoy resolves the
transport socket of every host it builds from an update (HostDescriptionImpl), kept or not,
and again when an update changes a kept host's metadata: the counters must move alike.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from protos.loader import parse_message
from proxy.model.cluster import translate_cluster
from proxy.model.endpoint import translate_cluster_load_assignment
from proxy.stats import Stats
from proxy.upstream.manager import ClusterManager
from tests.integration.proxy.helpers import UPSTREAM_TLS
from tests.support.envoy import Envoy

pytestmark = pytest.mark.conformance

TLS = {"name": "envoy.transport_sockets.tls",
       "typed_config": {"@type": UPSTREAM_TLS, "sni": "mtls.test"}}
MATCHES = [{"name": "mtls", "match": {"tlsMode": "istio"}, "transport_socket": TLS}]
STATS = ("mtls", "default")
# Each update: (port, labelled) per endpoint. The third relabels a kept host.
UPDATES = [[(1001, True), (1002, False)],
           [(1001, True), (1002, False), (1003, False)],
           [(1001, True), (1002, True)]]


def _assignment(endpoints: list[tuple[int, bool]]) -> dict[str, Any]:
    entries = []
    for port, labelled in endpoints:
        entry: dict[str, Any] = {"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": port}}}}
        if labelled:
            entry["metadata"] = {"filter_metadata": {
                "envoy.transport_socket_match": {"tlsMode": "istio"}}}
        entries.append(entry)
    return {"cluster_name": "backend", "endpoints": [{"lb_endpoints": entries}]}


def _write(directory: Path, version: int, endpoints: list[tuple[int, bool]]) -> None:
    document = {"version_info": str(version), "resources": [{
        "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
        **_assignment(endpoints)}]}
    staging = directory / "eds.tmp"
    staging.write_text(json.dumps(document))
    os.replace(staging, directory / "eds.json")


def _envoy_counts(envoy: Envoy) -> dict[str, int]:
    return {name: envoy.stat(f"cluster.backend.{name}.total_match_count") for name in STATS}


def _wait_version(envoy: Envoy, version: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if envoy.stat("cluster.backend.update_success") >= version + 1:
            return
        time.sleep(0.1)
    raise AssertionError(f"Envoy did not apply EDS version {version}")


def test_total_match_count_over_eds_updates_like_envoy() -> None:
    directory = Path(tempfile.mkdtemp(prefix="eds-tsmatch-"))
    _write(directory, 0, UPDATES[0])
    base = {"name": "backend", "type": "EDS", "connect_timeout": "1s",
            "transport_socket_matches": MATCHES}
    envoy_cluster = {**base, "eds_cluster_config": {"eds_config": {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(directory / "eds.json"),
                               "watched_directory": {"path": str(directory)}}}}}
    stats = Stats()
    manager = ClusterManager(stats)
    manager.update([translate_cluster(parse_message({**base, "eds_cluster_config": {}},
                                                    cluster_pb2.Cluster))])
    envoy_seen, ours_seen = [], []
    with Envoy({"node": {"id": "test", "cluster": "test"},
                "static_resources": {"clusters": [envoy_cluster]}}, name="envoy-tsm-eds") as envoy:
        envoy.wait_ready()
        for version, endpoints in enumerate(UPDATES):
            if version:
                _write(directory, version, endpoints)
            _wait_version(envoy, version)
            manager.update_assignment(translate_cluster_load_assignment(parse_message(
                _assignment(endpoints), endpoint_pb2.ClusterLoadAssignment)))
            envoy_seen.append(_envoy_counts(envoy))
            ours_seen.append({name: stats.counter(f"cluster.backend.{name}.total_match_count")
                              .value for name in STATS})
    assert envoy_seen[0] == {"mtls": 1, "default": 1}
    assert ours_seen == envoy_seen
