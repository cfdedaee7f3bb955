"""Control-plane push spans and metrics, fed with the control plane's own action objects."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from controlplane.protocol.events import Acked, Nacked, Push
from proxy.observability.controlplane import ControlPlaneTelemetry
from proxy.observability.tracing.export import MemoryExporter

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def attributes_of(span: Any) -> dict[str, Any]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in span.attributes}


def test_push_ack_nack_and_closed_stream() -> None:
    exporter = MemoryExporter()
    reader = InMemoryMetricReader()
    telemetry = ControlPlaneTelemetry.for_tests(exporter, [reader])
    telemetry.record(1, "node-a", [Push(CDS, "v1", "n1", ())])
    telemetry.record(1, "node-a", [Acked(CDS, "v1", "n1", 0.02)])
    telemetry.record(2, "node-b", [Push(CDS, "v2", "n2", ())])
    telemetry.record(2, "node-b", [Nacked(CDS, "v2", "n2", "bad cluster")])
    telemetry.record(3, "node-c", [Push(CDS, "v2", "n3", ())])
    telemetry.stream_closed(3)
    assert telemetry.flush()
    spans = {attributes_of(s)["xds.node.id"]: s for s in exporter.spans()}
    assert spans["node-a"].name == "xds push Cluster" and spans["node-a"].status.code == 0
    assert attributes_of(spans["node-a"])["xds.version"] == "v1"
    assert spans["node-b"].status.code == 2
    assert attributes_of(spans["node-b"])["xds.error_detail"] == "bad cluster"
    assert attributes_of(spans["node-c"])["error.type"] == "stream_closed"
    resource = exporter.requests[0].resource_spans[0].resource.attributes
    assert {kv.key: kv.value.string_value for kv in resource}["service.name"] == \
        "pointsman-controlplane"
    data = reader.get_metrics_data()
    assert data is not None
    metrics = {m.name: m for r in data.resource_metrics for s in r.scope_metrics
               for m in s.metrics}
    assert metrics["xds.push.count"].data.data_points[0].value == 3
    assert metrics["xds.push.nack.count"].data.data_points[0].value == 1
    assert metrics["xds.push.ack.duration"].data.data_points[0].count == 1
    telemetry.close()


def test_off_without_environment() -> None:
    telemetry = ControlPlaneTelemetry.from_environment({})
    telemetry.record(1, "n", [Push(CDS, "v1", "n1", ())])
    telemetry.record(1, "n", [Acked(CDS, "v1", "n1", 0.01)])
    assert telemetry.flush()
    telemetry.close()
