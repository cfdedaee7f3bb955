"""Structured logs and metrics text from stream actions."""

from __future__ import annotations

import io
import json
import logging

from controlplane import logs
from controlplane.cache import DEFAULT_GROUP, SnapshotCache
from controlplane.observe import Observer
from controlplane.protocol.sotw import SotwStream
from protos.registry import CLUSTER
from tests.unit.controlplane.builders import ack, cluster, endpoints, pushes, request, snapshot


def test_connect_push_ack_nack_are_json_lines():
    sink = io.StringIO()
    handler = logging.StreamHandler(sink)
    handler.setFormatter(logs.JsonLines())
    logs.LOGGER.addHandler(handler)
    previous_level = logs.LOGGER.level
    logs.LOGGER.setLevel(logging.INFO)
    try:
        cache = SnapshotCache()
        cache.set_snapshots({DEFAULT_GROUP: snapshot(cluster("a"), endpoints("a", 1))})
        observer = Observer(cache)
        stream = SotwStream(cache.snapshot_for)
        stream_id = observer.opened(stream, "ADS", "ipv4:127.0.0.1:1")
        actions = stream.receive(request(CLUSTER, node_id="n1"), 0.0)
        observer.record(stream_id, actions)
        [push] = pushes(actions)
        observer.record(stream_id, ack(stream, push, now=0.5))
        cache.set_snapshots({DEFAULT_GROUP: snapshot(cluster("a", "4s"), endpoints("a", 1))})
        actions = stream.snapshot_changed(1.0)
        observer.record(stream_id, actions)
        [second] = pushes(actions)
        observer.record(stream_id, stream.receive(request(
            CLUSTER, nonce=second.nonce, version=push.version, error="no"), 1.5))
        observer.closed(stream_id)
    finally:
        logs.LOGGER.removeHandler(handler)
        logs.LOGGER.setLevel(previous_level)
    entries = [json.loads(line) for line in sink.getvalue().splitlines()]
    assert [entry["event"] for entry in entries] == [
        "connect", "push", "ack", "push", "nack", "disconnect"]
    assert entries[0]["node"] == "n1" and entries[1]["type"] == "cluster"
    assert entries[4]["error"] == "no" and entries[4]["level"] == "warning"
    metrics = observer.metrics_text()
    assert 'pointsman_xds_pushes_total{type="cluster"} 2' in metrics
    assert 'pointsman_xds_push_ack_seconds_bucket{le="0.5"} 1' in metrics
    assert "pointsman_xds_connected_streams 0" in metrics


def _connected(cache: SnapshotCache, node_id: str, node_cluster: str) -> tuple[Observer, int]:
    observer = Observer(cache)
    stream = SotwStream(cache.snapshot_for)
    stream_id = observer.opened(stream, "ADS", "ipv4:127.0.0.1:1")
    first = request(CLUSTER, node_id=node_id)
    first.node.cluster = node_cluster
    observer.record(stream_id, stream.receive(first, 0.0))
    return observer, stream_id


def test_node_matching_no_named_group_is_a_warning(caplog):
    shared = snapshot(cluster("a"), endpoints("a", 1))
    cache = SnapshotCache()
    cache.set_snapshots({DEFAULT_GROUP: shared})
    with caplog.at_level(logging.WARNING, logger=logs.LOGGER.name):
        observer, _ = _connected(cache, "n1", "web")
    assert observer.status()["nodes"][0]["warning"] is None  # no named groups: shared is it
    assert "node_matches_no_group" not in caplog.text
    cache.set_snapshots({DEFAULT_GROUP: shared, "payments": shared, "web": shared})
    with caplog.at_level(logging.WARNING, logger=logs.LOGGER.name):
        observer, _ = _connected(cache, "n1", "web")  # by cluster
        assert observer.status()["nodes"][0]["warning"] is None
        observer, _ = _connected(cache, "n2", "api")
    [node] = observer.status()["nodes"]
    assert node["group"] == "(shared)"
    assert node["warning"] == ("node id 'n2' and cluster 'api' match no resource group "
                               "(payments, web): it gets the shared resources only")
    [record] = [r for r in caplog.records if r.getMessage() == "node_matches_no_group"]
    assert record.levelno == logging.WARNING and record.fields["node"] == "n2"  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=logs.LOGGER.name):
        observer.config_loaded(groups=3, resources=2)  # still unmatched after a reload: again
    assert [r.getMessage() for r in caplog.records] == ["node_matches_no_group"]
