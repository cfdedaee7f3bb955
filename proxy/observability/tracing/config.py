"""HttpConnectionManager.tracing -> TracingConfig (frozen), refusing what we do not implement.

Envoy docs: HttpConnectionManager.Tracing (sampling percentages, custom_tags,
max_path_tag_length, spawn_upstream_span, operation names) and config.trace.v3.OpenTelemetryConfig
(grpc_service / http_service, service_name, resource_detectors). The provider must be
`envoy.tracers.opentelemetry`; others are configuration errors naming `provider`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from proxy.model.fields import reject_unsupported
from proxy.observability.grpc_target import GrpcTarget, translate_grpc_service

OPENTELEMETRY_CONFIG = "envoy.config.trace.v3.OpenTelemetryConfig"
_ENV_DETECTOR = ("envoy.extensions.tracers.opentelemetry.resource_detectors.v3."
                 "EnvironmentResourceDetectorConfig")
_STATIC_DETECTOR = ("envoy.extensions.tracers.opentelemetry.resource_detectors.v3."
                    "StaticConfigResourceDetectorConfig")
_ALWAYS_ON = "envoy.extensions.tracers.opentelemetry.samplers.v3.AlwaysOnSamplerConfig"


@dataclass(frozen=True)
class HttpTarget:
    """OTLP/HTTP: `uri` as configured; `cluster` (if set) is resolved for the address."""

    uri: str
    cluster: str = ""
    timeout: float = 5.0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CustomTag:
    tag: str
    literal: str | None = None  # literal value, or an environment value read at config time
    request_header: str = ""
    default_value: str = ""


@dataclass(frozen=True)
class TracingConfig:
    service_name: str = ""
    grpc: GrpcTarget | None = None
    http: HttpTarget | None = None
    resource_attributes: tuple[tuple[str, str], ...] = ()
    random_sampling: float = 100.0
    client_sampling: float = 100.0
    overall_sampling: float = 100.0
    custom_tags: tuple[CustomTag, ...] = ()
    max_path_tag_length: int = 256
    spawn_upstream_span: bool = False
    operation: str = ""
    upstream_operation: str = ""
    # The HCM's listener has traffic_direction OUTBOUND: Envoy's egress operation
    # (ConnectionManagerTracingConfig), set by the listener translation, not by this message.
    egress: bool = False
    from_environment: bool = False  # built from OTEL_* variables, not the HCM
    max_cache_size: int | None = None  # spans buffered before a flush (Envoy default 1024)


def _percent(message: Any, name: str) -> float:
    if not message.HasField(name):
        return 100.0
    value = float(getattr(message, name).value)
    if not 0.0 <= value <= 100.0:
        raise ConfigError("a percentage must be within [0, 100]", field=f"{name}.value")
    return value


def translate_tracing(message: Any, *, environ: dict[str, str] | None = None) -> TracingConfig:
    """envoy...http_connection_manager.v3.HttpConnectionManager.Tracing -> TracingConfig."""
    if message.verbose:
        raise unsupported("verbose", "span logs")
    custom_tags = tuple(_translate_custom_tag(tag, f"custom_tags[{i}]", environ)
                        for i, tag in enumerate(message.custom_tags))
    if not message.HasField("provider"):
        raise unsupported("provider", "tracing needs provider envoy.tracers.opentelemetry")
    try:
        provider = _translate_provider(message.provider)
    except ConfigError as error:
        raise error.within(field="provider") from error
    max_path = 256
    if message.HasField("max_path_tag_length"):
        max_path = message.max_path_tag_length.value
    spawn = message.spawn_upstream_span.value if message.HasField("spawn_upstream_span") else False
    for name in ("operation", "upstream_operation"):
        if "%" in getattr(message, name):  # Envoy formats them as substitution strings
            raise unsupported(name, "command operators in span names")
    return TracingConfig(
        service_name=provider.service_name,
        grpc=provider.grpc,
        http=provider.http,
        resource_attributes=provider.resource_attributes,
        max_cache_size=provider.max_cache_size,
        random_sampling=_percent(message, "random_sampling"),
        client_sampling=_percent(message, "client_sampling"),
        overall_sampling=_percent(message, "overall_sampling"),
        custom_tags=custom_tags,
        max_path_tag_length=max_path,
        spawn_upstream_span=spawn,
        operation=message.operation,
        upstream_operation=message.upstream_operation,
    )


def _translate_provider(provider: Any) -> TracingConfig:
    if not provider.HasField("typed_config"):
        raise ConfigError("the tracing provider needs a typed_config", field="typed_config")
    typed = unpack_any(provider.typed_config)
    if typed.DESCRIPTOR.full_name != OPENTELEMETRY_CONFIG:
        raise ConfigError(f"tracer {typed.DESCRIPTOR.full_name!r} is not supported by Pointsman "
                          "(only envoy.tracers.opentelemetry)", field="typed_config")
    try:
        return _translate_opentelemetry(typed)
    except ConfigError as error:
        raise error.within(field="typed_config") from error


# What we implement of envoy.config.trace.v3.OpenTelemetryConfig and its HttpService; any other
# set field is refused by name (never ignored).
OPENTELEMETRY_FIELDS = ("grpc_service", "http_service", "service_name", "resource_detectors",
                        "sampler", "max_cache_size")
HTTP_SERVICE_FIELDS = ("http_uri", "request_headers_to_add")
HTTP_URI_FIELDS = ("uri", "cluster", "timeout")


def _translate_opentelemetry(config: Any) -> TracingConfig:
    reject_unsupported(config, OPENTELEMETRY_FIELDS)
    if config.HasField("sampler"):
        sampler = unpack_any(config.sampler.typed_config, field="sampler.typed_config")
        if sampler.DESCRIPTOR.full_name != _ALWAYS_ON:
            raise unsupported("sampler", "only the always_on sampler")
    grpc = http = None
    if config.HasField("grpc_service"):
        try:
            grpc = translate_grpc_service(config.grpc_service)
        except ConfigError as error:
            raise error.within(field="grpc_service") from error
    elif config.HasField("http_service"):
        http = _translate_http_service(config.http_service)
    resource: list[tuple[str, str]] = []
    for index, detector in enumerate(config.resource_detectors):
        field = f"resource_detectors[{index}]"
        resource.extend(_detect_resource(detector, field))
    max_cache_size = config.max_cache_size.value if config.HasField("max_cache_size") else None
    if max_cache_size == 0:
        raise ConfigError("max_cache_size must be positive", field="max_cache_size")
    return TracingConfig(service_name=config.service_name, grpc=grpc, http=http,
                         resource_attributes=tuple(resource), max_cache_size=max_cache_size)


def _translate_http_service(service: Any) -> HttpTarget:
    reject_unsupported(service, HTTP_SERVICE_FIELDS, prefix="http_service.")
    reject_unsupported(service.http_uri, HTTP_URI_FIELDS, prefix="http_service.http_uri.")
    for index, option in enumerate(service.request_headers_to_add):
        reject_unsupported(option.header, ("key", "value"),
                           prefix=f"http_service.request_headers_to_add[{index}].header.")
    uri = service.http_uri.uri
    if not urlsplit(uri).scheme.startswith("http"):
        raise ConfigError("uri must be an http(s) URL", field="http_service.http_uri.uri")
    timeout = service.http_uri.timeout.ToTimedelta().total_seconds() or 5.0
    headers = tuple((o.header.key.lower(), o.header.value) for o in service.request_headers_to_add)
    return HttpTarget(uri=uri, cluster=service.http_uri.cluster, timeout=timeout, headers=headers)


def _detect_resource(detector: Any, field: str) -> list[tuple[str, str]]:
    typed = unpack_any(detector.typed_config, field=f"{field}.typed_config")
    name = typed.DESCRIPTOR.full_name
    if name == _ENV_DETECTOR:
        return parse_resource_attributes(os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    if name == _STATIC_DETECTOR:
        attributes = typed.attributes  # type: ignore[attr-defined]
        return sorted((str(k), str(v)) for k, v in attributes.items())
    raise ConfigError(f"resource detector {name!r} is not supported by Pointsman", field=field)


def parse_resource_attributes(text: str) -> list[tuple[str, str]]:
    """OTEL_RESOURCE_ATTRIBUTES: `key1=value1,key2=value2` (values percent-decoded)."""
    from urllib.parse import unquote

    pairs = []
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs.append((key.strip(), unquote(value.strip())))
    return pairs


def _translate_custom_tag(tag: Any, field: str, environ: dict[str, str] | None) -> CustomTag:
    which = tag.WhichOneof("type")
    if which == "literal":
        return CustomTag(tag.tag, literal=tag.literal.value)
    if which == "environment":
        env = os.environ if environ is None else environ
        return CustomTag(tag.tag, literal=env.get(tag.environment.name,
                                                   tag.environment.default_value))
    if which == "request_header":
        return CustomTag(tag.tag, request_header=tag.request_header.name.lower(),
                         default_value=tag.request_header.default_value)
    raise unsupported(f"{field}.{which or 'type'}", "custom tag kind")
