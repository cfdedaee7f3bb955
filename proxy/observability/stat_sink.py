"""Envoy's `envoy.stat_sinks.open_telemetry`: proxy.stats flushed as OTLP metrics over gRPC.

Docs: extensions.stat_sinks.open_telemetry.v3.SinkConfig. Every `stats_flush_interval` (bootstrap,
default 5 s) counters go out as cumulative monotonic Sums (deltas with
report_counters_as_deltas), gauges as Gauges, histograms as explicit-bucket Histograms; with
`emit_tags_as_attributes` (default true) and `use_tag_extracted_name` (default true) the name is
the tag-extracted one and the tags are attributes, as in proxy.observability.prometheus.
This covers what the data path counts in proxy.stats: active connections, bytes, upstream health
(membership_healthy), retries (upstream_rq_retry), circuit-breaker overflows
(upstream_rq_pending_overflow, upstream_cx_overflow) and xDS versions (*.version gauges).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError
from protos.loader import unpack_any
from proxy.model.fields import reject_unsupported
from proxy.observability import otlp_metrics as otlp
from proxy.observability.grpc_target import ClusterResolver, GrpcTarget, translate_grpc_service
from proxy.observability.prometheus import extract_tags
from proxy.stats import Stats

LOG = logging.getLogger(__name__)
SINK_CONFIG = "envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig"
METRICS_EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@dataclass(frozen=True)
class StatSinkConfig:
    target: GrpcTarget
    prefix: str = ""
    report_counters_as_deltas: bool = False
    emit_tags_as_attributes: bool = True
    use_tag_extracted_name: bool = True


def translate_stats_sinks(messages: Any, *, field: str = "stats_sinks") -> tuple[StatSinkConfig,
                                                                                  ...]:
    """Bootstrap.stats_sinks -> configs; any sink but envoy.stat_sinks.open_telemetry is refused."""
    configs = []
    for index, sink in enumerate(messages):
        try:
            configs.append(translate_stats_sink(sink))
        except ConfigError as error:
            raise error.within(field=f"{field}[{index}]") from error
    return tuple(configs)


def translate_stats_sink(sink: Any) -> StatSinkConfig:
    if not sink.HasField("typed_config"):
        raise ConfigError("a stats sink needs a typed_config", field="typed_config")
    typed = unpack_any(sink.typed_config)
    if typed.DESCRIPTOR.full_name != SINK_CONFIG:
        raise ConfigError(f"stats sink {typed.DESCRIPTOR.full_name!r} is not supported by "
                          "Pointsman (only envoy.stat_sinks.open_telemetry)", field="typed_config")
    config: Any = typed
    try:
        # Allow-list: custom_metric_conversions, resource_detectors, report_histograms_as_deltas
        # (our histograms are cumulative) and any newer field are refused by name.
        reject_unsupported(config, SINK_FIELDS)
        if not config.HasField("grpc_service"):
            raise ConfigError("grpc_service is required", field="grpc_service")
        try:
            target = translate_grpc_service(config.grpc_service)
        except ConfigError as error:
            raise error.within(field="grpc_service") from error
    except ConfigError as error:
        raise error.within(field="typed_config") from error
    return StatSinkConfig(
        target=target, prefix=config.prefix,
        report_counters_as_deltas=config.report_counters_as_deltas,
        emit_tags_as_attributes=_bool(config, "emit_tags_as_attributes"),
        use_tag_extracted_name=_bool(config, "use_tag_extracted_name"),
    )


SINK_FIELDS = ("grpc_service", "report_counters_as_deltas", "emit_tags_as_attributes",
               "use_tag_extracted_name", "prefix")


def _bool(config: Any, name: str) -> bool:
    return bool(getattr(config, name).value) if config.HasField(name) else True


class StatsToOtlp:
    """Builds ExportMetricsServiceRequests from a Stats store (pure: no I/O)."""

    def __init__(self, config: StatSinkConfig, resource: dict[str, str]) -> None:
        self._config = config
        self._resource = resource
        self._last_counters: dict[str, int] = {}
        self._start_ns = time.time_ns()

    def _name_and_tags(self, stat: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        if not self._config.emit_tags_as_attributes:
            return self._config.prefix + stat, ()
        extracted, tags = extract_tags(stat)
        name = extracted if self._config.use_tag_extracted_name else stat
        return self._config.prefix + name, tags

    def build(self, stats: Stats, now_ns: int | None = None) -> bytes:
        """An ExportMetricsServiceRequest (wire bytes, proxy.observability.otlp_metrics):
        counters as monotonic sums (cumulative, or deltas), gauges, histograms (cumulative)."""
        now = now_ns or time.time_ns()
        start, delta = self._start_ns, self._config.report_counters_as_deltas
        groups: dict[tuple[str, str], list[Any]] = {}

        def add(stat: str, kind: str, point: Any) -> None:
            name, tags = self._name_and_tags(stat)
            groups.setdefault((name, kind), []).append((tags, point))

        for stat, value in _items(stats.counters):
            reported = value - self._last_counters.get(stat, 0) if delta else value
            self._last_counters[stat] = value
            add(stat, "sum", reported)
        for stat, value in _items(stats.gauges):
            add(stat, "gauge", value)
        for stat, recorded in list(stats.histograms.items()):
            add(stat, "histogram", recorded)
        temporality = otlp.TEMPORALITY_DELTA if delta else otlp.TEMPORALITY_CUMULATIVE
        encoded = []
        for (name, kind), points in groups.items():
            if kind == "histogram":
                data = otlp.histogram((otlp.HistogramPoint(
                    tags, start, now, item.samples, item.total, tuple(item.counts),
                    tuple(item.buckets)) for tags, item in points),
                    temporality=otlp.TEMPORALITY_CUMULATIVE)
            else:
                numbers = (otlp.NumberPoint(tags, start, now, value) for tags, value in points)
                data = otlp.gauge(numbers) if kind == "gauge" else otlp.sum_(
                    numbers, temporality=temporality, monotonic=True)
            encoded.append(otlp.metric(name, data))
        return otlp.request(sorted(self._resource.items()), "pointsman", encoded)


def _items(store: dict[str, Any]) -> list[tuple[str, int]]:
    for _ in range(3):  # the loop thread may add a stat while we copy
        try:
            return [(name, stat.value) for name, stat in list(store.items())]
        except RuntimeError:
            continue
    return []


class OtlpStatSink:
    """Flushes a Stats store every `interval` seconds on a daemon thread.

    The collector's cluster is resolved at the first flush, not at construction: the server
    builds its observability before its static clusters exist (Envoy too connects lazily).
    """

    def __init__(self, config: StatSinkConfig, stats: Stats, *, resolve: ClusterResolver | None,
                 resource: dict[str, str], interval: float = 5.0) -> None:
        self._config = config
        self._resolve = resolve
        self._builder = StatsToOtlp(config, resource)
        self._stats = stats
        self._channel: Any = None
        self._export: Any = None
        self._failures = stats.counter("stats_sink.open_telemetry.export_failures")
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, name="otel-stat-sink", daemon=True)
        self._thread.start()

    def _connect(self) -> Any:
        if self._export is None:
            self._channel = self._config.target.open_channel(self._resolve)
            self._export = self._channel.unary_unary(METRICS_EXPORT_METHOD)  # bytes as they are
        return self._export

    def flush(self) -> None:
        try:
            self._connect()(self._builder.build(self._stats), timeout=self._config.target.timeout,
                          metadata=self._config.target.metadata)
        except Exception as error:  # a dead or unknown collector must not stop the flushes
            self._failures.inc()
            if isinstance(error, ConfigError):  # a refused collector (e.g. TLS): say so loudly
                LOG.warning("stat sink export refused: %s", error)
            else:
                LOG.debug("stat sink export failed: %s", error)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if self._channel is not None:
            self._channel.close()
