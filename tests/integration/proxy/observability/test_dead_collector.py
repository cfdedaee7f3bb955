"""A dead or hung collector never slows or breaks traffic: spans are dropped and counted.

In-process: the pipeline pointed at a refused port and at a listener that never answers (the
gRPC deadline runs out). With the sidecar: the same requests with tracing to a hung collector
succeed with latency comparable to tracing off (skips until the HTTP path calls the tracer).
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator

import pytest

from proxy.observability.grpc_target import GrpcTarget
from proxy.observability.request_info import HeaderMap, RequestInfo
from proxy.observability.tracing.config import TracingConfig
from proxy.observability.tracing.environment import BatchSettings
from proxy.observability.tracing.export import SpanPipeline
from proxy.observability.tracing.tracer import Tracer
from proxy.stats import Stats
from tests.conformance.proxy.observability.http_support import (
    RecordingBackend,
    bootstrap,
    cluster,
    get,
    grpc_cluster,
    hcm,
    http_listener,
    opentelemetry_tracing,
)
from tests.conformance.proxy.observability.wiring import require_sidecar_tracing
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


@pytest.fixture
def refused_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def hung_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # the kernel completes handshakes; nobody ever reads or answers
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def run_spans(port: int, count: int) -> tuple[float, Stats, SpanPipeline]:
    stats = Stats()
    config = TracingConfig(grpc=GrpcTarget(target_uri=f"127.0.0.1:{port}", timeout=0.5))
    settings = BatchSettings(max_queue_size=256, schedule_delay=0.05, max_export_batch_size=64)
    pipeline = SpanPipeline(config, stats=stats, settings=settings)
    tracer = Tracer(config, pipeline, stats)
    started = time.monotonic()
    for _ in range(count):
        span = tracer.start_server_span(HeaderMap([("x-request-id", "0123abcd-aaaa")]),
                                        method="GET", path="/")
        span.finish(RequestInfo(start_time=time.time(), duration=0.001, response_code=200))
    return time.monotonic() - started, stats, pipeline


@pytest.mark.parametrize("collector", ["refused_port", "hung_port"])
def test_dead_collector_costs_the_data_path_nothing(collector: str,
                                                    request: pytest.FixtureRequest) -> None:
    port = request.getfixturevalue(collector)
    elapsed, stats, pipeline = run_spans(port, 5000)
    # 5000 spans take ~0.1 s here; a blocking export would take 0.5 s per batch of 64.
    assert elapsed < 5.0
    deadline = time.monotonic() + 10
    while stats.counter("tracing.opentelemetry.export_failures").value == 0:
        assert time.monotonic() < deadline, "the export never failed"
        time.sleep(0.05)
    started = time.monotonic()
    pipeline.close()
    assert time.monotonic() - started < 5.0
    assert stats.counter("tracing.opentelemetry.spans_sent").value == 0
    if collector == "hung_port":  # exports wait for their deadline: the bounded queue overflows
        assert stats.counter("tracing.opentelemetry.spans_dropped").value > 0


def median_latency(port: int, count: int) -> float:
    samples = []
    for _ in range(count):
        started = time.monotonic()
        assert get(f"http://127.0.0.1:{port}/x")[0] == 200
        samples.append(time.monotonic() - started)
    return statistics.median(samples)


def test_sidecar_with_a_hung_collector_serves_as_fast_as_without(hung_port: int) -> None:
    tracing = opentelemetry_tracing("otel", "sidecar")
    require_sidecar_tracing(hcm("backend", tracing=tracing))
    backend = RecordingBackend("backend")
    medians = {}
    try:
        for traced in (False, True):
            port = free_port()
            config = bootstrap(
                [http_listener("ingress", port, hcm("backend",
                                                    tracing=tracing if traced else None))],
                [cluster("backend", backend.port), grpc_cluster("otel", hung_port)])
            with Pointsman(config, name=f"pointsman-dead-collector-{traced}") as sidecar:
                sidecar.wait_ready()
                median_latency(port, 20)  # warm-up
                medians[traced] = median_latency(port, 200)
                if traced:
                    sidecar.wait_until(lambda: sidecar.stat(
                        "tracing.opentelemetry.export_failures") > 0, 20, "export failed")
    finally:
        backend.stop()
    # Generous: the machine is shared; a blocking exporter would add its 1 s timeout.
    assert medians[True] < max(3 * medians[False], medians[False] + 0.02), medians
