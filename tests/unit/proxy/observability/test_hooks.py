"""The Observability facade: tracer/pipeline sharing, environment tracing, access logs."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from proxy.observability.access_log.config import AccessLogConfig
from proxy.observability.access_log.format import TextFormatter
from proxy.observability.hooks import Observability, disabled
from proxy.observability.request_info import HeaderMap, RequestInfo
from proxy.observability.tracing.config import TracingConfig
from proxy.stats import Stats


def test_disabled_has_no_tracer_and_no_metrics() -> None:
    observability = disabled()
    assert observability.tracer(None) is None and observability.metrics is None
    observability.request_finished(RequestInfo(start_time=0))
    observability.close()


def test_same_collector_shares_one_pipeline_and_env_fills_service_name() -> None:
    observability = Observability(Stats(), environ={"OTEL_SERVICE_NAME": "from-env"})
    first = observability.tracer(TracingConfig(random_sampling=10.0))
    second = observability.tracer(TracingConfig(random_sampling=90.0, spawn_upstream_span=True))
    assert first is not None and second is not None
    assert first.pipeline is second.pipeline
    assert first.config.service_name == "from-env"
    assert first.pipeline.resource["service.name"] == "from-env"
    observability.close()


def test_otel_endpoint_alone_turns_tracing_on() -> None:
    observability = Observability(Stats(), environ={
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1",
        "OTEL_METRICS_EXPORTER": "none"})
    tracer = observability.tracer(None)
    assert tracer is not None and tracer.config.from_environment
    assert observability.metrics is None
    span = tracer.start_server_span(HeaderMap([("x-request-id", "0123abcd-aaaa")]))
    assert span.sampled
    span.finish(RequestInfo(start_time=0, response_code=200))
    observability.close()


def test_access_logger_from_configs(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    observability = disabled()
    logger = observability.access_logger([AccessLogConfig(
        "x", "file", TextFormatter.parse("%RESPONSE_CODE% %ROUTE_NAME%\n"), path=str(path))])
    observability.request_finished(RequestInfo(start_time=0, response_code=204, route_name="r"),
                                   logger)
    assert observability.flush()
    assert path.read_text() == "204 r\n"
    observability.close()


def test_not_exporting_validates_but_starts_nothing(tmp_path: Path) -> None:
    """The --concurrency parent's Observability: tracing and access logs are built and checked
    (a file that cannot be opened is still an error) but no thread, file or metric reader is
    left running, and nothing is written."""
    before = threading.active_count()
    observability = Observability(Stats(), environ={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, exporting=False)
    tracer = observability.tracer(TracingConfig(random_sampling=100.0))
    assert tracer is not None and observability.metrics is None
    span = tracer.start_server_span(HeaderMap([("x-request-id", "0123abcd-aaaa")]))
    span.finish(RequestInfo(start_time=0, response_code=200))
    path = tmp_path / "a.log"
    logger = observability.access_logger([AccessLogConfig(
        "x", "file", TextFormatter.parse("%RESPONSE_CODE%\n"), path=str(path))])
    observability.request_finished(RequestInfo(start_time=0, response_code=204), logger)
    assert threading.active_count() == before
    assert observability.flush() and path.read_text() == ""
    with pytest.raises(OSError):
        observability.access_logger([AccessLogConfig(
            "x", "file", TextFormatter.parse("%RESPONSE_CODE%\n"),
            path=str(tmp_path / "missing" / "a.log"))])
    observability.close()


def test_otel_tracing_on_an_outbound_listener_is_egress() -> None:
    """As a configured tracer on a traffic_direction OUTBOUND listener: "egress <host>" spans
    of kind CLIENT (proxy.observability.tracing.tracer), not "ingress"."""
    from proxy.network.http_connection_manager import HttpConnectionManagerConfig

    observability = Observability(Stats(), environ={
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1",
        "OTEL_METRICS_EXPORTER": "none"})
    inbound, outbound = observability.tracer(None), observability.tracer(None, egress=True)
    assert inbound is not None and not inbound.egress
    assert outbound is not None and outbound.egress
    untraced: Any = SimpleNamespace(tracing=None)  # the HCM's settings, tracing unset
    assert HttpConnectionManagerConfig(untraced).for_outbound_listener().outbound
    observability.close()
