"""The standard OTEL_* environment variables, read once at start-up.

https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/ and
.../protocol/exporter/. With no HCM tracing config, `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`
turns tracing on for every HTTP connection manager; with one, OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES fill in what the bootstrap leaves empty. OTEL_SDK_DISABLED=true or
OTEL_TRACES_EXPORTER=none turns environment tracing off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from protos.errors import ConfigError
from proxy.observability.grpc_target import GrpcTarget
from proxy.observability.tracing.config import HttpTarget, TracingConfig, parse_resource_attributes


@dataclass(frozen=True)
class BatchSettings:
    """OTEL_BSP_*: the bounded span queue and its export batches."""

    max_queue_size: int = 2048
    schedule_delay: float = 1.0  # seconds (spec default 5 s; Envoy flushes every 5 s too)
    max_export_batch_size: int = 512


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not an integer", source="environment") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive", source="environment")
    return value


def batch_settings(environ: Mapping[str, str]) -> BatchSettings:
    return BatchSettings(
        max_queue_size=_int(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
        schedule_delay=_int(environ, "OTEL_BSP_SCHEDULE_DELAY", 1000) / 1000.0,
        max_export_batch_size=_int(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
    )


def _headers(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    text = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get(
        "OTEL_EXPORTER_OTLP_HEADERS", "")
    return tuple((k.lower(), v) for k, v in parse_resource_attributes(text))


def _disabled(environ: Mapping[str, str]) -> bool:
    return (environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
            or environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none")


def tracing_from_environment(environ: Mapping[str, str]) -> TracingConfig | None:
    """A TracingConfig from OTEL_* alone, or None when they do not ask for tracing."""
    if _disabled(environ):
        return None
    signal_endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    base_endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if not signal_endpoint and not base_endpoint:
        return None
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc").strip()
    headers = _headers(environ)
    if protocol == "grpc":
        parts = urlsplit(signal_endpoint or base_endpoint)
        target = parts.netloc or parts.path
        config = TracingConfig(grpc=GrpcTarget(target_uri=target, headers=headers),
                               from_environment=True)
    elif protocol in ("http/protobuf", "http"):
        # The spec: the per-signal endpoint is used as is; the base one gets /v1/traces.
        uri = signal_endpoint or base_endpoint.rstrip("/") + "/v1/traces"
        config = TracingConfig(http=HttpTarget(uri=uri, headers=headers), from_environment=True)
    else:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported "
                          "(grpc, http/protobuf)", source="environment")
    ratio = _sampler_percent(environ)
    return apply_environment(replace(config, random_sampling=ratio), environ)


def _sampler_percent(environ: Mapping[str, str]) -> float:
    """OTEL_TRACES_SAMPLER: always_on/off, traceidratio and their parentbased_ forms."""
    sampler = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    base = sampler.removeprefix("parentbased_")
    if base == "always_on":
        return 100.0
    if base == "always_off":
        return 0.0
    if base == "traceidratio":
        try:
            ratio = float(environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            raise ConfigError("OTEL_TRACES_SAMPLER_ARG is not a number",
                              source="environment") from None
        return max(0.0, min(1.0, ratio)) * 100.0
    raise ConfigError(f"OTEL_TRACES_SAMPLER={sampler!r} is not supported", source="environment")


def apply_environment(config: TracingConfig, environ: Mapping[str, str]) -> TracingConfig:
    """Fill the service name and resource attributes the config leaves empty from OTEL_*."""
    resource = dict(parse_resource_attributes(environ.get("OTEL_RESOURCE_ATTRIBUTES", "")))
    resource.update(config.resource_attributes)
    service_name = (config.service_name or environ.get("OTEL_SERVICE_NAME", "").strip()
                    or resource.get("service.name", ""))
    return replace(config, service_name=service_name,
                   resource_attributes=tuple(sorted(resource.items())))
