"""`Observability`: what `ServerContext.observability` holds, built once by proxy.server.

The data path sees only these calls (no-op and cheap when nothing is configured):

    tracer = context.observability.tracer(settings.tracing)      # HCM config time; None = off
    logger = context.observability.access_logger(settings.access_logs)
    ...per request: span = tracer.start_server_span(...) ... span.finish(info)
    context.observability.request_finished(info, logger)          # access logs + metrics
    context.observability.upstream_attempt_finished(duration=..., ...)   # client histogram

Pipelines are shared: every HCM with the same collector and service name feeds one queue.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace

from proxy.observability.access_log.config import AccessLogConfig
from proxy.observability.access_log.sinks import AccessLogger, build_sink, check_sink
from proxy.observability.grpc_target import ClusterResolver
from proxy.observability.latency import LatencyHistograms
from proxy.observability.metrics import RequestMetrics, otlp_reader
from proxy.observability.request_info import RequestInfo
from proxy.observability.stat_sink import OtlpStatSink, StatSinkConfig
from proxy.observability.tracing.config import TracingConfig
from proxy.observability.tracing.environment import (
    apply_environment,
    batch_settings,
    tracing_from_environment,
)
from proxy.observability.tracing.export import SpanPipeline
from proxy.observability.tracing.tracer import TcpSpan, Tracer
from proxy.stats import Stats


class Observability:
    def __init__(self, stats: Stats, *, node_id: str = "", node_cluster: str = "",
                 resolve_cluster: ClusterResolver | None = None,
                 environ: Mapping[str, str] | None = None,
                 stat_sinks: Sequence[StatSinkConfig] = (),
                 stats_flush_interval: float = 5.0, exporting: bool = True) -> None:
        """`exporting=False` (the --concurrency parent, which serves no traffic) validates
        access logs and tracing as they are built but opens no sink, exporter or thread."""
        self.stats = stats
        self.exporting = exporting
        self.node_id = node_id
        self.node_cluster = node_cluster
        self._resolve = resolve_cluster
        self._environ = dict(os.environ if environ is None else environ)
        self._batch = batch_settings(self._environ)
        self._env_tracing = tracing_from_environment(self._environ)
        self._pipelines: dict[TracingConfig, SpanPipeline] = {}
        self._loggers: list[AccessLogger] = []
        self._stat_sinks = [
            OtlpStatSink(sink, stats, resolve=resolve_cluster, resource=self._resource(""),
                         interval=stats_flush_interval)
            for sink in stat_sinks]
        self.metrics = self._request_metrics(stat_sinks, stats_flush_interval) \
            if exporting else None
        self.latency = LatencyHistograms(stats)

    def _resource(self, service_name: str) -> dict[str, str]:
        resource = {"service.name": service_name or self._environ.get(
            "OTEL_SERVICE_NAME", "") or "unknown_service:pointsman"}
        if self.node_id:
            resource["service.instance.id"] = self.node_id
        return resource

    def _request_metrics(self, sinks: Sequence[StatSinkConfig],
                         interval: float) -> RequestMetrics | None:
        """The semconv histograms go to the first stat sink's collector, else OTEL_* metrics."""
        if sinks:
            target = sinks[0].target
            reader = otlp_reader(lambda: target.endpoint(self._resolve), interval=interval,
                                 timeout=target.timeout, headers=target.headers,
                                 channel_options=target.channel_options)
            return RequestMetrics([reader], self._resource(""))
        if self._environ.get("OTEL_METRICS_EXPORTER", "otlp") == "none" or \
                self._environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return None
        endpoint = (self._environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
                    or self._environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")).strip()
        if not endpoint:
            return None
        protocol = (self._environ.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
                    or self._environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc")
        if protocol == "grpc":
            endpoint = endpoint.split("://", 1)[-1]
        elif "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" not in self._environ:
            endpoint = endpoint.rstrip("/") + "/v1/metrics"  # the spec's per-signal path
        reader = otlp_reader(endpoint, protocol=protocol, interval=interval)
        return RequestMetrics([reader], self._resource(""))

    # -- tracing ------------------------------------------------------------------------------

    def tracer(self, config: TracingConfig | None, *, egress: bool = False) -> Tracer | None:
        """The Tracer for one HCM's tracing config (None: OTEL_* may still turn tracing on,
        as egress spans on an OUTBOUND listener, like a configured tracer's)."""
        if config is None:
            config = self._env_tracing
            if config is None:
                return None
            if egress:
                config = replace(config, egress=True)
        else:
            config = apply_environment(config, self._environ)
        return Tracer(config, self._pipeline(config), self.stats)

    def _pipeline(self, config: TracingConfig) -> SpanPipeline:
        key = replace(config, random_sampling=0, client_sampling=0, overall_sampling=0,
                      custom_tags=(), operation="", upstream_operation="",
                      spawn_upstream_span=False, max_path_tag_length=0, egress=False)
        pipeline = self._pipelines.get(key)
        if pipeline is None:
            extra = {"service.instance.id": self.node_id} if self.node_id else {}
            settings = self._batch
            if config.max_cache_size is not None:  # Envoy: flush once this many are buffered
                settings = replace(settings, max_export_batch_size=config.max_cache_size,
                                   max_queue_size=max(settings.max_queue_size,
                                                      config.max_cache_size))
            pipeline = self._pipelines[key] = SpanPipeline(
                config, stats=self.stats, settings=settings, resolve=self._resolve,
                extra_resource=extra, exporting=self.exporting)
        return pipeline

    def tcp_span(self, config: TracingConfig | None, *, listener: str, cluster: str,
                 downstream: tuple[str, int] | None, server_name: str = "") -> TcpSpan | None:
        """A span for one tcp_proxy connection, when tracing is configured (env or config)."""
        config = config or self._env_tracing
        if config is None:
            return None
        return TcpSpan(self._pipeline(config), listener=listener, cluster=cluster,
                       downstream=downstream, server_name=server_name)

    # -- access logs and metrics ---------------------------------------------------------------

    def access_logger(self, configs: Sequence[AccessLogConfig]) -> AccessLogger:
        if not self.exporting:
            for config in configs:
                check_sink(config, self._resolve)
            return AccessLogger([])
        logger = AccessLogger([
            build_sink(config, stats=self.stats, resolve=self._resolve, node_id=self.node_id,
                       cluster=self.node_cluster) for config in configs])
        if logger:
            self._loggers.append(logger)
        return logger

    def request_finished(self, info: RequestInfo, logger: AccessLogger | None = None) -> None:
        if logger is not None:
            logger.log(info)
        if self.metrics is not None:
            self.metrics.record_server(info)

    def upstream_attempt_finished(self, *, duration: float, method: str, status_code: int | None,
                                  cluster: str, upstream_host: str) -> None:
        if status_code is not None and cluster:  # a response came: Envoy's upstream_rq_time
            self.latency.upstream(cluster, duration)
        if self.metrics is not None:
            self.metrics.record_client(duration=duration, method=method,
                                       status_code=status_code, cluster=cluster,
                                       upstream_host=upstream_host)

    # -- lifecycle ----------------------------------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        done = all(p.flush(timeout) for p in self._pipelines.values())
        done = all(logger.flush(timeout) for logger in self._loggers) and done
        if self.metrics is not None:
            done = self.metrics.flush(timeout) and done
        return done

    def close(self) -> None:
        """Drain (bounded) and stop every exporter thread; call from the server's shutdown."""
        for pipeline in self._pipelines.values():
            pipeline.close()
        for logger in self._loggers:
            logger.close()
        for sink in self._stat_sinks:
            sink.close()
        if self.metrics is not None:
            self.metrics.close()
        self._pipelines.clear()
        self._loggers.clear()

    def __repr__(self) -> str:
        return (f"Observability(pipelines={len(self._pipelines)}, loggers={len(self._loggers)}, "
                f"metrics={'on' if self.metrics else 'off'})")


def disabled(stats: Stats | None = None) -> Observability:
    """No tracing, logs or metrics unless OTEL_* say otherwise: the default for tests."""
    return Observability(stats or Stats(), environ={})


