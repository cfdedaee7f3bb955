"""Access-log sinks: the request path renders one line and queues it; a thread writes.

`envoy.access_loggers.file` / `.stdout` / `.stderr` write rendered lines in batches (Envoy flushes
its file logs every second too, `file_flush_interval_msec`); `envoy.access_loggers.open_telemetry`
sends OTLP LogRecords over gRPC (opentelemetry.proto.collector.logs.v1.LogsService/Export).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Protocol

from proxy.observability.access_log.config import AccessLogConfig, OtlpLogConfig
from proxy.observability.batching import BackgroundBatcher
from proxy.observability.grpc_target import ClusterResolver
from proxy.observability.request_info import RequestInfo
from proxy.stats import Stats


class AccessLogSink(Protocol):
    def log(self, info: RequestInfo) -> None: ...

    def flush(self, timeout: float = 5.0) -> bool: ...

    def close(self) -> None: ...


class StreamSink:
    """File, stdout or stderr: render on the loop, write on the batcher's thread."""

    def __init__(self, config: AccessLogConfig, stats: Stats | None = None,
                 *, interval: float = 1.0, max_queue: int = 65536) -> None:
        assert config.formatter is not None
        self._render = config.formatter.render
        self._stream, self._owned = _open_stream(config)
        dropped = stats.counter("access_logs.dropped") if stats is not None else None
        self._batcher: BackgroundBatcher[str] = BackgroundBatcher(
            self._write, name=f"access-log-{config.kind}", max_queue=max_queue,
            max_batch=4096, interval=interval,
            on_drop=dropped.inc if dropped is not None else None)

    def log(self, info: RequestInfo) -> None:
        self._batcher.add(self._render(info))

    def _write(self, lines: list[str]) -> None:
        self._stream.write("".join(lines))
        self._stream.flush()

    def flush(self, timeout: float = 5.0) -> bool:
        return self._batcher.flush_now(timeout)

    def close(self) -> None:
        self._batcher.close()
        if self._owned:
            self._stream.close()

    def __repr__(self) -> str:
        return f"StreamSink({self._batcher!r})"


def _open_stream(config: AccessLogConfig) -> tuple[IO[str], bool]:
    if config.kind == "stdout":
        return sys.stdout, False
    if config.kind == "stderr":
        return sys.stderr, False
    if config.path == "/dev/stdout":
        return sys.stdout, False
    if config.path == "/dev/stderr":
        return sys.stderr, False
    return open(config.path, "a", encoding="utf-8"), True  # closed in close()


class OtlpLogSink:
    """envoy.access_loggers.open_telemetry: one OTLP LogRecord per request, batched over gRPC."""

    def __init__(self, config: OtlpLogConfig, resolve: ClusterResolver | None,
                 *, node_id: str = "", cluster: str = "", stats: Stats | None = None) -> None:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

        self._config = config
        self._channel = config.target.open_channel(resolve)
        self._export = logs_service_pb2_grpc.LogsServiceStub(self._channel).Export
        self._resource = _resource_attributes(config, node_id, cluster)
        dropped = stats.counter("access_logs.otlp.dropped") if stats is not None else None
        self._batcher: BackgroundBatcher[RequestInfo] = BackgroundBatcher(
            self._send, name="access-log-otlp", interval=config.flush_interval,
            max_batch=config.max_batch,
            on_drop=dropped.inc if dropped is not None else None)

    def log(self, info: RequestInfo) -> None:
        self._batcher.add(info)

    def _send(self, infos: list[RequestInfo]) -> None:
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

        request = logs_service_pb2.ExportLogsServiceRequest()
        resource_logs = request.resource_logs.add()
        for key, value in self._resource:
            attribute = resource_logs.resource.attributes.add()
            attribute.key, attribute.value.string_value = key, value
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = self._config.log_name or "envoy_access_log"
        for info in infos:
            self._fill_record(scope_logs.log_records.add(), info)
        self._export(request, timeout=self._config.target.timeout,
                     metadata=self._config.target.metadata)

    def _fill_record(self, record: object, info: RequestInfo) -> None:
        record.time_unix_nano = int(info.start_time * 1e9)  # type: ignore[attr-defined]
        record.observed_time_unix_nano = time.time_ns()  # type: ignore[attr-defined]
        if self._config.body is not None:
            record.body.string_value = self._config.body.render(info)  # type: ignore[attr-defined]
        for key, formatter in self._config.attributes:
            attribute = record.attributes.add()  # type: ignore[attr-defined]
            attribute.key = key
            attribute.value.string_value = formatter.render(info)
        if info.trace_id and len(info.trace_id) == 32:
            record.trace_id = bytes.fromhex(info.trace_id)  # type: ignore[attr-defined]

    def flush(self, timeout: float = 5.0) -> bool:
        return self._batcher.flush_now(timeout)

    def close(self) -> None:
        self._batcher.close()
        self._channel.close()


def _resource_attributes(config: OtlpLogConfig, node_id: str,
                         cluster: str) -> tuple[tuple[str, str], ...]:
    """Envoy's built-in labels (log_name, zone_name, cluster_name, node_name) + configured."""
    builtin: tuple[tuple[str, str], ...] = ()
    if not config.disable_builtin_labels:
        builtin = (("log_name", config.log_name), ("zone_name", ""),
                   ("cluster_name", cluster), ("node_name", node_id))
    return builtin + config.resource_attributes


def build_sink(config: AccessLogConfig, *, stats: Stats | None = None,
               resolve: ClusterResolver | None = None, node_id: str = "",
               cluster: str = "") -> AccessLogSink:
    if config.kind == "otlp":
        assert config.otlp is not None
        return OtlpLogSink(config.otlp, resolve, node_id=node_id, cluster=cluster, stats=stats)
    return StreamSink(config, stats)


class AccessLogger:
    """All the access logs of one HCM or tcp_proxy: `log(info)` fans out to every sink."""

    def __init__(self, sinks: list[AccessLogSink]) -> None:
        self._sinks = tuple(sinks)
        self.log: Callable[[RequestInfo], None] = (
            self._log_all if self._sinks else _no_log)

    def _log_all(self, info: RequestInfo) -> None:
        for sink in self._sinks:
            sink.log(info)

    def flush(self, timeout: float = 5.0) -> bool:
        return all(sink.flush(timeout) for sink in self._sinks)

    def close(self) -> None:
        for sink in self._sinks:
            sink.close()

    def __bool__(self) -> bool:
        return bool(self._sinks)


def _no_log(info: RequestInfo) -> None:
    return None

