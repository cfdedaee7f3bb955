"""AccessLog protos -> frozen access-log configs, rejecting what we do not implement by name.

Supported (envoy.config.accesslog.v3.AccessLog.typed_config):
- envoy.extensions.access_loggers.file.v3.FileAccessLog (path, log_format, deprecated format /
  json_format / typed_json_format)
- envoy.extensions.access_loggers.stream.v3.StdoutAccessLog / StderrAccessLog
- envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig (OTLP logs over
  gRPC: common_config.log_name/grpc_service/buffer_flush_interval/buffer_size_bytes (0 only),
  body, attributes,
  resource_attributes, disable_builtin_labels)
`AccessLog.filter` and custom `formatters` extensions are refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.model.fields import reject_unsupported
from proxy.observability.access_log.format import DEFAULT_FORMAT, JsonFormatter, TextFormatter
from proxy.observability.grpc_target import GrpcTarget, translate_grpc_service

Formatter = TextFormatter | JsonFormatter

FILE = "envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
STDERR = "envoy.extensions.access_loggers.stream.v3.StderrAccessLog"
OTLP = "envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig"


@dataclass(frozen=True)
class OtlpLogConfig:
    target: GrpcTarget
    log_name: str
    body: Formatter | None  # None: empty body
    attributes: tuple[tuple[str, Formatter], ...]
    resource_attributes: tuple[tuple[str, str], ...]
    disable_builtin_labels: bool
    flush_interval: float  # seconds (Envoy default 1 s)
    max_batch: int = 512  # 1 when common_config.buffer_size_bytes is 0: every entry flushed


@dataclass(frozen=True)
class AccessLogConfig:
    name: str
    kind: str  # "file", "stdout", "stderr", "otlp"
    formatter: Formatter | None = None  # None for otlp
    path: str = ""
    otlp: OtlpLogConfig | None = field(default=None)


def translate_access_logs(messages: Any, *,
                          field: str = "access_log") -> tuple[AccessLogConfig, ...]:
    """A repeated AccessLog field (HCM or tcp_proxy) -> configs, errors naming `field[i]`."""
    configs = []
    for index, message in enumerate(messages):
        try:
            configs.append(translate_access_log(message))
        except ConfigError as error:
            raise error.within(field=f"{field}[{index}]") from error
    return tuple(configs)


def translate_access_log(message: Message) -> AccessLogConfig:
    if message.HasField("filter"):  # type: ignore[attr-defined]
        raise unsupported("filter", "access log filters")
    if not message.HasField("typed_config"):  # type: ignore[attr-defined]
        raise ConfigError("an access log needs a typed_config", field="typed_config")
    typed = unpack_any(message.typed_config)  # type: ignore[attr-defined]
    kind_name = typed.DESCRIPTOR.full_name
    name = message.name  # type: ignore[attr-defined]
    try:
        if kind_name == FILE:
            return _translate_file(name, typed)
        if kind_name in (STDOUT, STDERR):
            kind = "stdout" if kind_name == STDOUT else "stderr"
            return AccessLogConfig(name, kind, _substitution_format(typed, "log_format"))
        if kind_name == OTLP:
            return AccessLogConfig(name, "otlp", otlp=_translate_otlp(typed))
    except ConfigError as error:
        raise error.within(field="typed_config") from error
    raise ConfigError(f"access logger {kind_name!r} is not supported by Pointsman",
                      field="typed_config")


def _translate_file(name: str, typed: Any) -> AccessLogConfig:
    if not typed.path:
        raise ConfigError("a file access log needs a path", field="path")
    which = typed.WhichOneof("access_log_format")
    if which == "format":
        formatter: Formatter = TextFormatter.parse(typed.format or DEFAULT_FORMAT)
    elif which in ("json_format", "typed_json_format"):
        struct = json_format.MessageToDict(getattr(typed, which))
        formatter = _json(struct, which, omit_empty=False, sort=False)
    else:
        formatter = _substitution_format(typed, "log_format")
    return AccessLogConfig(name, "file", formatter, path=typed.path)


def _json(struct: dict[str, Any], field_name: str, *, omit_empty: bool,
          sort: bool) -> JsonFormatter:
    try:
        return JsonFormatter.parse(struct, omit_empty_values=omit_empty, sort_properties=sort)
    except ConfigError as error:
        raise error.within(field=field_name) from error


def _substitution_format(parent: Any, field_name: str) -> Formatter:
    """envoy.config.core.v3.SubstitutionFormatString (absent: Envoy's default format)."""
    if not parent.HasField(field_name):
        return TextFormatter.parse(DEFAULT_FORMAT)
    fmt = getattr(parent, field_name)
    try:
        return _translate_substitution(fmt)
    except ConfigError as error:
        raise error.within(field=field_name) from error


def _translate_substitution(fmt: Any) -> Formatter:
    if len(fmt.formatters):
        raise unsupported("formatters", "formatter extensions")
    omit = fmt.omit_empty_values
    which = fmt.WhichOneof("format")
    if which == "json_format":
        sort = fmt.HasField("json_format_options") and fmt.json_format_options.sort_properties
        return _json(json_format.MessageToDict(fmt.json_format), "json_format", omit_empty=omit,
                     sort=bool(sort))
    if which == "text_format_source":
        text = _read_data_source(fmt.text_format_source, "text_format_source")
    elif which == "text_format":
        text = fmt.text_format
    else:
        text = DEFAULT_FORMAT
    try:
        return TextFormatter.parse(text, omit_empty_values=omit)
    except ConfigError as error:
        raise error.within(field=which or "text_format") from error


def _read_data_source(source: Any, field_name: str) -> str:
    """envoy.config.core.v3.DataSource, read once at config time."""
    which = source.WhichOneof("specifier")
    if which == "inline_string":
        return str(source.inline_string)
    if which == "inline_bytes":
        return bytes(source.inline_bytes).decode()
    if which == "filename":
        try:
            return Path(source.filename).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(f"cannot read {source.filename}: {error}",
                              field=f"{field_name}.filename") from error
    if which == "environment_variable":
        value = os.environ.get(source.environment_variable)
        if value is None:
            raise ConfigError(f"environment variable {source.environment_variable} is not set",
                              field=f"{field_name}.environment_variable")
        return value
    if source.HasField("watched_directory"):
        raise unsupported(f"{field_name}.watched_directory")
    raise ConfigError("empty data source", field=field_name)


# What we implement of OpenTelemetryAccessLogConfig and its CommonGrpcAccessLogConfig; any other
# set field (stat_prefix, formatters, grpc_stream_retry_policy, custom_tags, ...) is refused.
OTLP_LOG_FIELDS = ("common_config", "disable_builtin_labels", "resource_attributes", "body",
                   "attributes")
OTLP_COMMON_FIELDS = ("log_name", "grpc_service", "transport_api_version",
                      "buffer_flush_interval", "buffer_size_bytes")


def _translate_otlp(typed: Any) -> OtlpLogConfig:
    common = typed.common_config
    reject_unsupported(typed, OTLP_LOG_FIELDS)
    reject_unsupported(common, OTLP_COMMON_FIELDS, prefix="common_config.")
    if not common.HasField("grpc_service"):
        raise ConfigError("an OpenTelemetry access log needs common_config.grpc_service",
                          field="common_config.grpc_service")
    try:
        target = translate_grpc_service(common.grpc_service)
    except ConfigError as error:
        raise error.within(field="common_config.grpc_service") from error
    interval = 1.0
    if common.HasField("buffer_flush_interval"):
        interval = common.buffer_flush_interval.ToTimedelta().total_seconds() or 1.0
    return OtlpLogConfig(
        target=target,
        log_name=common.log_name,
        body=_any_value_format(typed.body, "body") if typed.HasField("body") else None,
        attributes=tuple(
            (kv.key, _any_value_format(kv.value, f"attributes.values[{i}]"))
            for i, kv in enumerate(typed.attributes.values)),
        resource_attributes=tuple(
            (kv.key, kv.value.string_value) for kv in typed.resource_attributes.values),
        disable_builtin_labels=typed.disable_builtin_labels,
        flush_interval=interval,
        max_batch=_max_batch(common),
    )


def _max_batch(common: Any) -> int:
    """common_config.buffer_size_bytes: Envoy flushes once the buffered entries exceed that many
    bytes, and 0 "effectively disables the batching" (als.proto). We batch by entry count, so we
    honour 0 (flush every entry) and refuse other sizes rather than approximate them."""
    if not common.HasField("buffer_size_bytes"):
        return 512
    if common.buffer_size_bytes.value == 0:
        return 1
    raise unsupported("common_config.buffer_size_bytes",
                      "only 0 (no batching); batches are counted in entries, not bytes")


def _any_value_format(value: Any, field_name: str) -> Formatter:
    """Envoy formats string AnyValues as format strings; other kinds we refuse by name."""
    if value.WhichOneof("value") != "string_value":
        raise unsupported(field_name, "only string_value bodies/attributes")
    try:
        return TextFormatter.parse(value.string_value)
    except ConfigError as error:
        raise error.within(field=f"{field_name}.string_value") from error
