"""`pointsman proxy -c` refuses a telemetry collector cluster with a TLS transport_socket at
start-up (exit 1, the cluster and its use named): our exporters speak plaintext only. Before,
the process started and every export failed later (counted and warned)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conformance.proxy.observability.http_support import (
    bootstrap,
    cluster,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.support.ports import free_port
from tests.support.processes import python_argv

TLS = {"name": "envoy.transport_sockets.tls", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "sni": "collector.example"}}


def test_start_up_refuses_a_tls_collector_cluster(tmp_path: Path) -> None:
    config = bootstrap(
        [http_listener("traced", free_port(), hcm("backend",
                                                  tracing=opentelemetry_tracing("otel", "s")))],
        [cluster("backend", free_port()), {**grpc_cluster("otel", free_port()),
                                           "transport_socket": TLS}])
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(python_argv("-m", "proxy", "-c", str(path)), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "resource 'otel'" in done.stderr and "field 'transport_socket'" in done.stderr
    assert "telemetry collector (the tracer of listener 'traced')" in done.stderr
