"""Frozen models for a cluster's `health_checks` and `outlier_detection`, with translators.

Defaults and meanings from api/envoy/config/core/v3/health_check.proto and
api/envoy/config/cluster/v3/outlier_detection.proto. Fields we do not implement are refused
by name: custom checkers, event logging to files, TLS options for checks, HTTP/2 HTTP checks,
retriable statuses, request header edits, PROXY protocol on TCP checks, outlier `monitors`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError, unsupported
from proxy.model.fields import reject_unsupported, seconds
from proxy.model.metadata import SocketMetadata, canonical_struct


class CheckKind(enum.Enum):
    TCP = "tcp"
    HTTP = "http"
    GRPC = "grpc"


@dataclass(frozen=True)
class TcpCheck:
    send: bytes = b""  # empty: connect-only check
    receive: tuple[bytes, ...] = ()  # each block must appear, in order (Envoy "fuzzy" match)


@dataclass(frozen=True)
class HttpCheck:
    path: str
    host: str = ""  # empty: the cluster name, as Envoy sends
    method: str = "GET"
    # Half-open [start, end) ranges; Envoy's default is [200, 201).
    expected_statuses: tuple[tuple[int, int], ...] = ((200, 201),)

    def expects(self, status: int) -> bool:
        return any(start <= status < end for start, end in self.expected_statuses)


@dataclass(frozen=True)
class GrpcCheck:
    service_name: str = ""
    authority: str = ""  # empty: the cluster name


@dataclass(frozen=True)
class HealthCheck:
    kind: CheckKind
    timeout: float
    interval: float
    unhealthy_threshold: int
    healthy_threshold: int
    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    grpc: GrpcCheck | None = None
    initial_jitter: float = 0.0
    interval_jitter: float = 0.0
    interval_jitter_percent: int = 0
    # Envoy: used while the cluster has never had an upstream connection; defaults 60 s.
    no_traffic_interval: float = 60.0
    no_traffic_healthy_interval: float | None = None  # None: no_traffic_interval
    unhealthy_interval: float | None = None  # None: interval
    unhealthy_edge_interval: float | None = None  # None: unhealthy_interval
    healthy_edge_interval: float | None = None  # None: interval
    alt_port: int = 0
    reuse_connection: bool = True  # HTTP checks keep one connection per host (Envoy default)
    # transport_socket_match_criteria: checks connect with the cluster's transport socket
    # match for this metadata (and the host's locality metadata) instead of the host's own
    # (health_check.proto; proxy.model.socket_match). None: the host's socket.
    socket_match_criteria: SocketMetadata | None = None


_HC_FIELDS = {
    "timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
    "unhealthy_threshold", "healthy_threshold", "alt_port", "reuse_connection",
    "http_health_check", "tcp_health_check", "grpc_health_check", "no_traffic_interval",
    "no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval",
    "healthy_edge_interval", "always_log_health_check_failures",
    "always_log_health_check_success", "transport_socket_match_criteria",
}
_METHODS = {0: "GET", 1: "GET", 2: "HEAD", 3: "POST", 4: "PUT", 5: "DELETE", 6: "CONNECT",
            7: "OPTIONS", 8: "TRACE", 9: "PATCH"}


def translate_health_check(message: Any) -> HealthCheck:
    """config.core.v3.HealthCheck -> HealthCheck."""
    reject_unsupported(message, _HC_FIELDS)
    for required in ("timeout", "interval", "unhealthy_threshold", "healthy_threshold"):
        if not message.HasField(required):
            raise ConfigError("is required", field=required)
    kind, tcp, http, grpc = _checker(message)
    return HealthCheck(
        kind=kind,
        timeout=_positive(message, "timeout"),
        interval=_positive(message, "interval"),
        unhealthy_threshold=message.unhealthy_threshold.value,
        healthy_threshold=message.healthy_threshold.value,
        tcp=tcp,
        http=http,
        grpc=grpc,
        initial_jitter=_duration(message, "initial_jitter") or 0.0,
        interval_jitter=_duration(message, "interval_jitter") or 0.0,
        interval_jitter_percent=message.interval_jitter_percent,
        no_traffic_interval=_duration(message, "no_traffic_interval") or 60.0,
        no_traffic_healthy_interval=_duration(message, "no_traffic_healthy_interval"),
        unhealthy_interval=_duration(message, "unhealthy_interval"),
        unhealthy_edge_interval=_duration(message, "unhealthy_edge_interval"),
        healthy_edge_interval=_duration(message, "healthy_edge_interval"),
        alt_port=message.alt_port.value if message.HasField("alt_port") else 0,
        reuse_connection=(message.reuse_connection.value
                          if message.HasField("reuse_connection") else True),
        socket_match_criteria=(canonical_struct(message.transport_socket_match_criteria)
                               if message.HasField("transport_socket_match_criteria")
                               else None),
    )


def _checker(message: Any) -> tuple[CheckKind, TcpCheck | None, HttpCheck | None,
                                    GrpcCheck | None]:
    which = message.WhichOneof("health_checker")
    if which == "tcp_health_check":
        return CheckKind.TCP, _tcp(message.tcp_health_check), None, None
    if which == "http_health_check":
        return CheckKind.HTTP, None, _http(message.http_health_check), None
    if which == "grpc_health_check":
        return CheckKind.GRPC, None, None, _grpc(message.grpc_health_check)
    if which is None:
        raise ConfigError("one of tcp/http/grpc_health_check is required",
                          field="health_checker")
    raise unsupported(which)


def _tcp(check: Any) -> TcpCheck:
    reject_unsupported(check, {"send", "receive"}, prefix="tcp_health_check.")
    send = _payload(check.send, "tcp_health_check.send") if check.HasField("send") else b""
    receive = tuple(_payload(block, f"tcp_health_check.receive[{index}]")
                    for index, block in enumerate(check.receive))
    return TcpCheck(send, receive)


def _payload(payload: Any, field: str) -> bytes:
    which = payload.WhichOneof("payload")
    if which == "text":
        try:
            return bytes.fromhex(payload.text)
        except ValueError:
            raise ConfigError("text must be hex-encoded", field=f"{field}.text") from None
    if which == "binary":
        return bytes(payload.binary)
    raise ConfigError("a payload needs text or binary", field=field)


def _http(check: Any) -> HttpCheck:
    prefix = "http_health_check."
    reject_unsupported(check, {"host", "path", "expected_statuses", "method", "codec_client_type"},
                       prefix=prefix)
    if check.codec_client_type != 0:  # HTTP1
        raise unsupported(f"{prefix}codec_client_type", "only HTTP1")
    if not check.path:
        raise ConfigError("is required", field=f"{prefix}path")
    statuses = tuple((int(r.start), int(r.end)) for r in check.expected_statuses)
    for index, (start, end) in enumerate(statuses):
        if not 100 <= start < end <= 600:
            raise ConfigError("must be a range within [100, 600)",
                              field=f"{prefix}expected_statuses[{index}]")
    if check.method == 6:  # CONNECT: Envoy rejects it for health checks
        raise ConfigError("CONNECT is not allowed", field=f"{prefix}method")
    return HttpCheck(check.path, check.host, _METHODS[check.method], statuses or ((200, 201),))


def _grpc(check: Any) -> GrpcCheck:
    reject_unsupported(check, {"service_name", "authority"}, prefix="grpc_health_check.")
    return GrpcCheck(check.service_name, check.authority)


def _duration(message: Any, name: str) -> float | None:
    if not message.HasField(name):
        return None
    value = seconds(getattr(message, name))
    return value if value > 0 else None


def _positive(message: Any, name: str) -> float:
    value = seconds(getattr(message, name))
    if value <= 0:
        raise ConfigError("must be greater than 0", field=name)
    return value


@dataclass(frozen=True)
class OutlierDetection:
    """Envoy's defaults (outlier_detection.proto); percentages are 0..100."""

    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    max_ejection_time_jitter: float = 0.0
    max_ejection_percent: int = 10
    consecutive_5xx: int = 5
    enforcing_consecutive_5xx: int = 100
    consecutive_gateway_failure: int = 5
    enforcing_consecutive_gateway_failure: int = 0
    split_external_local_origin_errors: bool = False
    consecutive_local_origin_failure: int = 5
    enforcing_consecutive_local_origin_failure: int = 100
    enforcing_success_rate: int = 100
    enforcing_local_origin_success_rate: int = 100
    success_rate_minimum_hosts: int = 5
    success_rate_request_volume: int = 100
    success_rate_stdev_factor: int = 1900  # divided by 1000
    failure_percentage_threshold: int = 85
    enforcing_failure_percentage: int = 0
    enforcing_failure_percentage_local_origin: int = 0
    failure_percentage_minimum_hosts: int = 5
    failure_percentage_request_volume: int = 50
    successful_active_health_check_uneject_host: bool = True
    always_eject_one_host: bool = False


_PERCENT_FIELDS = {
    "max_ejection_percent", "enforcing_consecutive_5xx", "enforcing_success_rate",
    "enforcing_consecutive_gateway_failure", "enforcing_consecutive_local_origin_failure",
    "enforcing_local_origin_success_rate", "failure_percentage_threshold",
    "enforcing_failure_percentage", "enforcing_failure_percentage_local_origin",
}
_COUNT_FIELDS = {
    "consecutive_5xx", "consecutive_gateway_failure", "consecutive_local_origin_failure",
    "success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor",
    "failure_percentage_minimum_hosts", "failure_percentage_request_volume",
}
_DURATION_FIELDS = {"interval", "base_ejection_time", "max_ejection_time",
                    "max_ejection_time_jitter"}
_BOOL_FIELDS = {"successful_active_health_check_uneject_host", "always_eject_one_host"}


def translate_outlier_detection(message: Any) -> OutlierDetection:
    """config.cluster.v3.OutlierDetection -> OutlierDetection (`monitors` is refused)."""
    reject_unsupported(message, _PERCENT_FIELDS | _COUNT_FIELDS | _DURATION_FIELDS | _BOOL_FIELDS
                       | {"split_external_local_origin_errors"})
    values: dict[str, Any] = {}
    for name in _PERCENT_FIELDS | _COUNT_FIELDS:
        if message.HasField(name):
            values[name] = getattr(message, name).value
            if name in _PERCENT_FIELDS and values[name] > 100:
                raise ConfigError("must be <= 100", field=name)
    for name in _DURATION_FIELDS:
        if message.HasField(name):
            value = seconds(getattr(message, name))
            if value <= 0 and name != "max_ejection_time_jitter":
                raise ConfigError("must be greater than 0", field=name)
            values[name] = value
    for name in _BOOL_FIELDS:
        if message.HasField(name):
            values[name] = getattr(message, name).value
    values["split_external_local_origin_errors"] = message.split_external_local_origin_errors
    base = values.get("base_ejection_time", 30.0)
    # max_ejection_time: "the default (300 s) or base_ejection_time, whichever is larger".
    values.setdefault("max_ejection_time", max(300.0, base))
    return OutlierDetection(**values)
