"""Issue 5's end-to-end test: control plane + two sidecars + two services + Arize Phoenix.

client -> sidecar-a -> service-a -> sidecar-b -> service-b. Service A passes on the W3C context
it receives (as an OpenTelemetry-instrumented service would), so one request must give one trace
in Phoenix: sidecar-a SERVER -> sidecar-a CLIENT -> sidecar-b SERVER -> sidecar-b CLIENT.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.proxy.observability.backends import Phoenix
from tests.conformance.proxy.observability.http_support import (
    RecordingBackend,
    cluster,
    get,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.conformance.proxy.observability.wiring import require_sidecar_tracing
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, python_argv

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ENV_DETECTOR = {"name": "envoy.tracers.opentelemetry.resource_detectors.environment",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.tracers."
                                 "opentelemetry.resource_detectors.v3."
                                 "EnvironmentResourceDetectorConfig"}}


def sidecar_hcm(name: str, cluster_name: str) -> dict[str, Any]:
    tracing = opentelemetry_tracing("otel", name, spawn_upstream_span=True)
    tracing["provider"]["typed_config"]["resource_detectors"] = [ENV_DETECTOR]
    # Phoenix is a Python server: on a loaded machine an export can take more than the 1 s
    # the other tests allow, and a timed-out batch is dropped (no retries, as Envoy's).
    tracing["provider"]["typed_config"]["grpc_service"]["timeout"] = "10s"
    return hcm(cluster_name, tracing=tracing, stat_prefix=name)


def node_resources(name: str, port: int, service: str, service_port: int) -> dict[str, Any]:
    listener = http_listener(name, port, sidecar_hcm(name, service))
    return {"version_info": "1", "resources": [
        {"@type": CLUSTER, **cluster(service, service_port)},
        {"@type": LISTENER, **listener}]}


def ads_bootstrap(node_id: str, xds_port: int, phoenix_grpc_port: int) -> dict[str, Any]:
    return {
        "node": {"id": node_id, "cluster": "mesh"},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [grpc_cluster("xds", xds_port),
                                          grpc_cluster("otel", phoenix_grpc_port)]},
    }


@pytest.fixture(scope="session")  # session scope: checked before Phoenix (~15 s) starts
def sidecar_tracing() -> None:
    require_sidecar_tracing(sidecar_hcm("sidecar-a", "service-a"))


def test_one_request_is_one_trace_across_two_sidecars(
        sidecar_tracing: None, phoenix: Phoenix, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    project = f"mesh-{uuid.uuid4().hex[:8]}"
    port_a, port_b, xds_port = free_port(), free_port(), free_port()
    service_b = RecordingBackend("service-b")
    service_a = RecordingBackend("service-a", forward_to=f"127.0.0.1:{port_b}")
    for node, port, service, service_port in (("sidecar-a", port_a, "service-a", service_a.port),
                                              ("sidecar-b", port_b, "service-b", service_b.port)):
        (tmp_path / node).mkdir()
        (tmp_path / node / "resources.json").write_text(
            json.dumps(node_resources(node, port, service, service_port)))
    # Phoenix files spans by project: the sidecars' environment resource detector sets it.
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    processes: list[ManagedProcess] = []
    try:
        controlplane = ManagedProcess(python_argv(
            "-m", "controlplane", "--resources", str(tmp_path), "--listen",
            f"127.0.0.1:{xds_port}", "--poll-interval", "0.1"), name="controlplane")
        processes.append(controlplane)
        wait_for_port(xds_port, timeout=30)
        for node in ("sidecar-a", "sidecar-b"):
            processes.append(Pointsman(ads_bootstrap(node, xds_port, phoenix.grpc_port),
                                       name=node))
        wait_for_port(port_a, timeout=30)
        wait_for_port(port_b, timeout=30)
        status, body = get(f"http://127.0.0.1:{port_a}/checkout")
        assert (status, body) == (200, "service-a -> service-b")
        spans = wait_for_trace(phoenix, project, 4)
    finally:
        for process in reversed(processes):
            process.stop()
        service_a.stop()
        service_b.stop()
    assert len({span["context"]["trace_id"] for span in spans}) == 1
    by_id = {span["context"]["span_id"]: span for span in spans}
    roots = [span for span in spans if span["parent_id"] is None]
    assert len(roots) == 1 and roots[0]["name"] == "ingress"
    chain = [roots[0]]
    while len(chain) < 4:
        children = [s for s in spans if s["parent_id"] == chain[-1]["context"]["span_id"]]
        assert len(children) == 1, (chain, spans)
        chain.append(children[0])
    assert [span["name"] for span in chain] == [
        "ingress", "router service-a egress",
        "ingress", "router service-b egress"]
    assert set(by_id) == {span["context"]["span_id"] for span in chain}
    header = service_b.requests[0]["traceparent"].split("-")
    assert header[1] == chain[0]["context"]["trace_id"]
    assert header[2] == chain[3]["context"]["span_id"]


def wait_for_trace(phoenix: Phoenix, project: str, count: int,
                   timeout: float = 40.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    spans: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        spans = phoenix.spans(project)
        if len(spans) >= count:
            return spans
        time.sleep(0.25)
    raise AssertionError(f"Phoenix has {len(spans)} spans for {project!r}: {spans}")
