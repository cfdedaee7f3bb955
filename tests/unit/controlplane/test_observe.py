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
