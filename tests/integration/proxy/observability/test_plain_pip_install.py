"""`pip install pointsman` into a fresh virtualenv, with nothing else done, must export OTLP.

xds-protos ships an old copy of opentelemetry/proto (for Envoy's OpenTelemetry access logger
protos) that can overwrite opentelemetry-proto's; with it the generated OTLP classes lack
InstrumentationScope and the scope_* fields. `make install` used to repair the venv by
reinstalling opentelemetry-proto; a user's plain pip install had no such step, and OTLP metric
and log export broke. The exporters now encode OTLP themselves (proxy.observability.otlp_wire)
and the runtime imports no `opentelemetry.proto`: this test builds a fresh venv with plain
pip, runs the sidecar from it (its console script, so the repository's sources are not on its
path) and checks that spans, stat-sink metrics, request histograms and access logs all reach a
collector.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.proxy.observability.http_support import (
    bootstrap,
    get,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.integration.proxy.observability.collector import FakeCollector
from tests.support.processes import REPO
from tests.support.proxies import AdminProxy

pytestmark = pytest.mark.slow

SINK = "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig"
OTLP_LOG = ("type.googleapis.com/"
            "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with `pip install <this repository>`, plain: the console script's path."""
    venv = tmp_path_factory.mktemp("plain-pip") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(REPO)], check=True,
                   timeout=900, capture_output=True)
    return venv / "bin" / "pointsman"


def config(port: int, collector_port: int) -> dict[str, Any]:
    tracing = opentelemetry_tracing("otel", "plain-pip")
    access_log = [{"name": "envoy.access_loggers.open_telemetry", "typed_config": {
        "@type": OTLP_LOG,
        "common_config": {"log_name": "plain-pip", "transport_api_version": "V3",
                          "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}},
                          "buffer_flush_interval": "0.2s"},
        "body": {"string_value": "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE%"}}}]
    listener_hcm = hcm("unused", tracing=tracing, access_log=access_log)
    listener_hcm["route_config"]["virtual_hosts"][0]["routes"] = [{
        "match": {"prefix": "/"}, "direct_response": {"status": 200}}]
    return bootstrap([http_listener("ingress", port, listener_hcm)],
                     [grpc_cluster("otel", collector_port)],
                     stats_sinks=[{"name": "envoy.stat_sinks.open_telemetry", "typed_config": {
                         "@type": SINK,
                         "grpc_service": {"envoy_grpc": {"cluster_name": "otel"}}}}],
                     stats_flush_interval="0.5s")


def eventually(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def metric_names(collector: FakeCollector) -> set[str]:
    return {metric.name for request in list(collector.metrics)
            for resource in request.resource_metrics for scope in resource.scope_metrics
            for metric in scope.metrics}


def test_a_plain_pip_install_exports_traces_metrics_and_logs(installed: Path) -> None:
    from tests.support.ports import free_port

    collector = FakeCollector()
    port = free_port()
    sidecar = AdminProxy(config(port, collector.port), lambda path: [
        str(installed), "proxy", "-c", str(path), "--log-level", "warn"], name="plain-pip")
    try:
        sidecar.wait_ready()
        for _ in range(3):
            assert get(f"http://127.0.0.1:{port}/plain")[0] == 200
        assert eventually(lambda: collector.spans()), sidecar.output()
        assert eventually(lambda: {"http.server.request.duration",
                                   "http.downstream_rq_total"} <= metric_names(collector)), (
            sorted(metric_names(collector)), sidecar.output())
        assert eventually(lambda: collector.logs), sidecar.output()
    finally:
        sidecar.stop()
        collector.stop()
    records = [record for request in collector.logs for resource in request.resource_logs
               for scope in resource.scope_logs for record in scope.log_records]
    assert records[0].body.string_value == "GET /plain 200"
