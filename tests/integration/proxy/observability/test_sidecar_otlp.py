"""The sidecar and the control plane send OTLP to a (fake) collector: the stats sink and the
request histograms, OTLP access logs, and the control plane's push spans."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.proxy.observability.http_support import (
    RecordingBackend,
    bootstrap,
    cluster,
    get,
    grpc_cluster,
    hcm,
    http_listener,
)
from tests.integration.proxy.observability.collector import FakeCollector
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, python_argv

SINK = "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig"
OTLP_LOG = ("type.googleapis.com/"
            "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig")
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    server = FakeCollector()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def backend() -> Iterator[RecordingBackend]:
    server = RecordingBackend("backend")
    try:
        yield server
    finally:
        server.stop()


def eventually(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def metric_points(collector: FakeCollector, name: str) -> list[Any]:
    points = []
    for request in list(collector.metrics):
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        kind = metric.WhichOneof("data")
                        points.extend(getattr(metric, kind).data_points)
    return points


def test_stats_sink_and_request_histograms(collector: FakeCollector,
                                           backend: RecordingBackend) -> None:
    port = free_port()
    config = bootstrap([http_listener("ingress", port, hcm("backend"))],
                       [cluster("backend", backend.port), grpc_cluster("otel", collector.port)],
                       stats_sinks=[{"name": "envoy.stat_sinks.open_telemetry", "typed_config": {
                           "@type": SINK,
                           "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}}}}],
                       stats_flush_interval="0.5s")
    with Pointsman(config, name="pointsman-stat-sink") as sidecar:
        sidecar.wait_ready()
        for _ in range(3):
            assert get(f"http://127.0.0.1:{port}/x")[0] == 200

        def upstream_rq_total() -> int:
            values = [point.as_int for point in metric_points(collector,
                                                              "cluster.upstream_rq_total")
                      if {(kv.key, kv.value.string_value) for kv in point.attributes}
                      == {("envoy_cluster_name", "backend")}]
            return values[-1] if values else 0

        assert eventually(lambda: upstream_rq_total() == 3)

        def server_requests() -> int:
            return sum(point.count for point in
                       metric_points(collector, "http.server.request.duration")[-1:])

        assert eventually(lambda: server_requests() == 3)


def test_opentelemetry_access_log(collector: FakeCollector, backend: RecordingBackend) -> None:
    port = free_port()
    access_log = [{"name": "envoy.access_loggers.open_telemetry", "typed_config": {
        "@type": OTLP_LOG,
        "common_config": {"log_name": "mesh", "transport_api_version": "V3",
                          "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}},
                          "buffer_flush_interval": "0.2s"},
        "body": {"string_value": "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%"},
        "attributes": {"values": [{"key": "cluster",
                                   "value": {"string_value": "%UPSTREAM_CLUSTER%"}}]}}}]
    config = bootstrap([http_listener("ingress", port, hcm("backend", access_log=access_log))],
                       [cluster("backend", backend.port), grpc_cluster("otel", collector.port)])
    with Pointsman(config, name="pointsman-otlp-log") as sidecar:
        sidecar.wait_ready()
        assert get(f"http://127.0.0.1:{port}/logged")[0] == 200

        def records() -> list[Any]:
            return [record for request in list(collector.logs)
                    for resource in request.resource_logs
                    for scope in resource.scope_logs for record in scope.log_records]

        [record] = eventually(records)
        assert record.body.string_value == "GET /logged 200"
        assert {kv.key: kv.value.string_value for kv in record.attributes} == {
            "cluster": "backend"}


def test_control_plane_push_spans(collector: FakeCollector, tmp_path: Path) -> None:
    xds_port = free_port()
    resources = tmp_path / "resources.json"
    resources.write_text(json.dumps({"version_info": "1", "resources": [
        {"@type": CLUSTER, **cluster("backend", 9)}]}))
    sidecar_config = {
        "node": {"id": "sidecar-1", "cluster": "web"},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"}},
        "static_resources": {"clusters": [grpc_cluster("xds", xds_port)]}}
    environment = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
                   "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_METRICS_EXPORTER": "none"}
    with ManagedProcess(python_argv("-m", "controlplane", "--resources", str(resources),
                                    "--listen", f"127.0.0.1:{xds_port}"),
                        name="controlplane-otel", env=environment):
        wait_for_port(xds_port, timeout=30)
        with Pointsman(sidecar_config, name="pointsman-xds-traced") as sidecar:
            sidecar.wait_ready()
            spans = eventually(lambda: [span for resource, span in collector.spans()
                                        if span.name == "xds push Cluster"
                                        and span.end_time_unix_nano])
    assert spans, collector.spans()
    attributes = {kv.key: kv.value for kv in spans[0].attributes}
    assert attributes["xds.node.id"].string_value == "sidecar-1"
    assert attributes["xds.resource_count"].int_value == 1
    assert spans[0].status.code == 0  # ACKed
    [(resource, _)] = [(r, s) for r, s in collector.spans() if s is spans[0]]
    assert resource["service.name"] == "pointsman-controlplane"
