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
from proxy.observability.otlp_wire import (
    any_value,
    encode_attributes,
    encode_resource,
    encode_scope,
    fixed64,
    length_delimited,
)
from proxy.observability.request_info import RequestInfo
from proxy.stats import Stats

LOGS_EXPORT_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


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
        self._config = config
        self._channel = config.target.open_channel(resolve)
        self._export = self._channel.unary_unary(LOGS_EXPORT_METHOD)  # bytes as they are
        self._resource = _resource_attributes(config, node_id, cluster)
        self._encoded_resource = encode_resource(list(self._resource))
        self._scope = encode_scope(config.log_name or "envoy_access_log")
        dropped = stats.counter("access_logs.otlp.dropped") if stats is not None else None
        self._batcher: BackgroundBatcher[RequestInfo] = BackgroundBatcher(
            self._send, name="access-log-otlp", interval=config.flush_interval,
            max_batch=config.max_batch,
            on_drop=dropped.inc if dropped is not None else None)

    def log(self, info: RequestInfo) -> None:
        self._batcher.add(info)

    def _send(self, infos: list[RequestInfo]) -> None:
        """One ExportLogsServiceRequest{resource_logs: [{resource 1, scope_logs 2: [{scope 1,
        log_records 2}]}]} (opentelemetry/proto/logs/v1/logs.proto; encoded by hand, see
        proxy.observability.otlp_wire)."""
        records = b"".join(length_delimited(2, self._record(info)) for info in infos)
        scope_logs = length_delimited(2, self._scope + records)
        request = length_delimited(1, self._encoded_resource + scope_logs)
        self._export(request, timeout=self._config.target.timeout,
                     metadata=self._config.target.metadata)

    def _record(self, info: RequestInfo) -> bytes:
        """A LogRecord: time_unix_nano 1, body 5, attributes 6, trace_id 9, observed 11."""
        parts = [fixed64(1, int(info.start_time * 1e9))]
        if self._config.body is not None:
            parts.append(length_delimited(5, any_value(self._config.body.render(info))))
        parts.append(encode_attributes(6, [(key, formatter.render(info))
                                           for key, formatter in self._config.attributes]))
        if info.trace_id and len(info.trace_id) == 32:
            parts.append(length_delimited(9, bytes.fromhex(info.trace_id)))
        parts.append(fixed64(11, time.time_ns()))
        return b"".join(parts)

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


def check_sink(config: AccessLogConfig, resolve: ClusterResolver | None) -> None:
    """What building the sink would refuse, without starting it: a file that cannot be opened
    for appending, an OTLP collector cluster with no endpoint (the --concurrency parent
    validates each update this way; its workers build the sinks)."""
    if config.kind == "otlp":
        assert config.otlp is not None
        config.otlp.target.endpoint(resolve)
        return
    stream, owned = _open_stream(config)
    if owned:
        stream.close()


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

