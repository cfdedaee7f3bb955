"""Tracing and metrics for the control plane's pushes, the same way as the sidecar's.

The control plane's Observer already sees every stream action; it hands them on:

    telemetry = ControlPlaneTelemetry.from_environment()     # OTEL_* (None-cost when unset)
    telemetry.record(stream_id, node_id, actions)            # in Observer.record
    telemetry.stream_closed(stream_id)                       # in Observer.closed
    telemetry.close()                                        # at shutdown

A push opens a span `xds push <type>` (kind CLIENT: the control plane calls the node) with the
node, type, version, nonce and resource count; the ACK ends it OK, a NACK ends it ERROR with the
error detail, a closed stream ends it ERROR "stream closed". Metrics (opentelemetry-sdk):
`xds.push.count` (counter), `xds.push.ack.duration` (histogram, s) and `xds.push.nack.count`,
by `xds.type`. Actions are read by attribute (duck-typed) so this package does not import
`controlplane`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource

from proxy.observability.metrics import otlp_reader
from proxy.observability.tracing.config import TracingConfig
from proxy.observability.tracing.environment import batch_settings, tracing_from_environment
from proxy.observability.tracing.export import SpanPipeline, TraceExporter
from proxy.observability.tracing.otlp import SPAN_KIND_CLIENT, SpanRecord
from proxy.observability.tracing.propagation import new_span_id, new_trace_id
from proxy.stats import Stats

SERVICE_NAME = "pointsman-controlplane"
_ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _short_type(type_url: str) -> str:
    return type_url.rsplit(".", 1)[-1]


class ControlPlaneTelemetry:
    def __init__(self, *, pipeline: SpanPipeline | None = None,
                 metric_readers: Sequence[MetricReader] = (),
                 service_name: str = SERVICE_NAME) -> None:
        self._pipeline = pipeline
        self._open: dict[tuple[int, str], SpanRecord] = {}
        self._meters: MeterProvider | None = None
        if metric_readers:
            self._meters = MeterProvider(metric_readers=list(metric_readers),
                                         resource=Resource.create({"service.name": service_name}),
                                         shutdown_on_exit=False)
            meter = self._meters.get_meter("pointsman.controlplane")
            self._pushes = meter.create_counter("xds.push.count", description="xDS responses sent")
            self._nacks = meter.create_counter("xds.push.nack.count", description="NACKs received")
            self._ack_duration = meter.create_histogram(
                "xds.push.ack.duration", unit="s", description="Time from a push to its ACK",
                explicit_bucket_boundaries_advisory=_ACK_BUCKETS)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *,
                         stats: Stats | None = None) -> ControlPlaneTelemetry:
        """Tracing and metrics from OTEL_* (endpoint, protocol, service name); off when unset."""
        env = dict(os.environ if environ is None else environ)
        config = tracing_from_environment(env)
        pipeline = None
        service_name = env.get("OTEL_SERVICE_NAME", "") or SERVICE_NAME
        if config is not None:
            config = replace(config, service_name=service_name)
            pipeline = SpanPipeline(config, stats=stats or Stats(), settings=batch_settings(env))
        readers: list[MetricReader] = []
        endpoint = (env.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
                    or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")).strip()
        if endpoint and env.get("OTEL_METRICS_EXPORTER", "otlp") != "none" and \
                env.get("OTEL_SDK_DISABLED", "").lower() != "true":
            protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            if protocol == "grpc":
                endpoint = endpoint.split("://", 1)[-1]
            elif "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" not in env:
                endpoint = endpoint.rstrip("/") + "/v1/metrics"
            readers.append(otlp_reader(endpoint, protocol=protocol))
        return cls(pipeline=pipeline, metric_readers=readers, service_name=service_name)

    @classmethod
    def for_tests(cls, exporter: TraceExporter, readers: Sequence[MetricReader] = (),
                  stats: Stats | None = None) -> ControlPlaneTelemetry:
        pipeline = SpanPipeline(TracingConfig(service_name=SERVICE_NAME), stats=stats or Stats(),
                                settings=batch_settings({}), exporter=exporter)
        return cls(pipeline=pipeline, metric_readers=readers)

    # -- the hook ------------------------------------------------------------------------------

    def record(self, stream_id: int, node_id: str, actions: Iterable[Any]) -> None:
        for action in actions:
            kind = type(action).__name__
            if kind == "Push":
                self.push_sent(stream_id, node_id, action.type_url, action.version,
                               action.nonce, len(action.resources))
            elif kind == "Acked":
                self.push_answered(stream_id, action.type_url, action.nonce, error="",
                                   latency=action.latency)
            elif kind == "Nacked":
                self.push_answered(stream_id, action.type_url, action.nonce,
                                   error=action.message or "NACK")

    def push_sent(self, stream_id: int, node_id: str, type_url: str, version: str, nonce: str,
                  resources: int) -> None:
        short = _short_type(type_url)
        if self._meters is not None:
            self._pushes.add(1, {"xds.type": short})
        if self._pipeline is None:
            return
        self._open[(stream_id, nonce)] = SpanRecord(
            new_trace_id(), new_span_id(), 0, f"xds push {short}", SPAN_KIND_CLIENT,
            time.time_ns(), attributes={
                "xds.node.id": node_id, "xds.type_url": type_url, "xds.version": version,
                "xds.nonce": nonce, "xds.resource_count": resources, "xds.stream": stream_id})

    def push_answered(self, stream_id: int, type_url: str, nonce: str, *, error: str,
                      latency: float | None = None) -> None:
        short = _short_type(type_url)
        if self._meters is not None:
            if error:
                self._nacks.add(1, {"xds.type": short})
            elif latency is not None:
                self._ack_duration.record(latency, {"xds.type": short})
        record = self._open.pop((stream_id, nonce), None)
        if record is None or self._pipeline is None:
            return
        self._end(record, error)

    def stream_closed(self, stream_id: int) -> None:
        for key in [key for key in self._open if key[0] == stream_id]:
            self._end(self._open.pop(key), "stream closed before ACK")

    def _end(self, record: SpanRecord, error: str) -> None:
        assert self._pipeline is not None
        record.end_ns = time.time_ns()
        if error:
            record.error = True
            record.attributes["error.type"] = "nack" if error != "stream closed before ACK" \
                else "stream_closed"
            record.attributes["xds.error_detail"] = error[:512]
        self._pipeline.submit(record)

    # -- lifecycle -----------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        done = self._pipeline.flush(timeout) if self._pipeline is not None else True
        if self._meters is not None:
            done = bool(self._meters.force_flush(int(timeout * 1000))) and done
        return done

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.close()
        if self._meters is not None:
            self._meters.shutdown()
