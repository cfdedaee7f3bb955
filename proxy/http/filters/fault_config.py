"""HTTPFault -> frozen fault settings (Envoy's FaultSettings and filters/common/fault).

api: extensions/filters/http/fault/v3/fault.proto, extensions/filters/common/fault/v3. A
fault fires for `percentage` of the matching requests; the proto's default percentage is 0
(a fault without one never fires, as in Envoy). Header-controlled faults read the request:

  x-envoy-fault-delay-request: N              header_delay: N ms
  x-envoy-fault-delay-request-percentage: N   lowers the numerator (never raises it)
  x-envoy-fault-abort-request: N              header_abort: HTTP status N (200..599)
  x-envoy-fault-abort-grpc-request: N         header_abort: gRPC status N (HTTP 200)
  x-envoy-fault-abort-request-percentage: N
  x-envoy-fault-throughput-response: N        header_limit: N KiB/s (0 or absent: none)
  x-envoy-fault-throughput-response-percentage: N

Only the first value of a header counts; a value that is not a decimal integer is ignored
(absl::SimpleAtoi). The `*_runtime` fields name runtime keys; without a runtime layer (the
sidecar has none) Envoy uses the configured values, as here. `filter_metadata` (dynamic
metadata for access logs) is refused.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.codec.headers import Headers
from proxy.model.fields import reject_unsupported
from proxy.model.matchers import HeaderMatcher, translate_header_matcher, within

DELAY_REQUEST = "x-envoy-fault-delay-request"
DELAY_PERCENTAGE = "x-envoy-fault-delay-request-percentage"
ABORT_REQUEST = "x-envoy-fault-abort-request"
ABORT_GRPC_REQUEST = "x-envoy-fault-abort-grpc-request"
ABORT_PERCENTAGE = "x-envoy-fault-abort-request-percentage"
THROUGHPUT_RESPONSE = "x-envoy-fault-throughput-response"
THROUGHPUT_PERCENTAGE = "x-envoy-fault-throughput-response-percentage"

_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}  # envoy.type.v3.FractionalPercent
_WHITESPACE = " \t\n\v\f\r"


def parse_unsigned(value: str | None, bits: int = 64) -> int | None:
    """absl::SimpleAtoi into an unsigned integer: surrounding ASCII whitespace and a leading
    '+' are allowed, anything else but decimal digits fails, and so does overflow."""
    if value is None:
        return None
    text = value.strip(_WHITESPACE)
    if text.startswith("+"):
        text = text[1:]
    if not text or not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if number < 1 << bits else None


@dataclass(frozen=True)
class Percentage:
    """envoy.type.v3.FractionalPercent."""

    numerator: int
    denominator: int

    def lowered_by(self, value: str | None) -> Percentage:
        """HeaderPercentageProvider: a header numerator counts up to the configured one."""
        numerator = parse_unsigned(value, 32)
        if numerator is None:
            return self
        return Percentage(min(numerator, self.numerator), self.denominator)

    def draw(self, rng: random.Random) -> bool:
        # Envoy's featureEnabled: random % denominator < numerator.
        return rng.randrange(self.denominator) < self.numerator


@dataclass(frozen=True)
class DelayFault:
    fixed_ms: int | None  # None: header_delay
    percentage: Percentage

    def percentage_for(self, headers: Headers) -> Percentage:
        if self.fixed_ms is not None:
            return self.percentage
        return self.percentage.lowered_by(headers.get(DELAY_PERCENTAGE))

    def duration_ms(self, headers: Headers) -> int | None:
        if self.fixed_ms is not None:
            return self.fixed_ms
        return parse_unsigned(headers.get(DELAY_REQUEST))


@dataclass(frozen=True)
class AbortFault:
    http_status: int | None
    grpc_status: int | None
    from_headers: bool  # header_abort
    percentage: Percentage

    def percentage_for(self, headers: Headers) -> Percentage:
        if not self.from_headers:
            return self.percentage
        return self.percentage.lowered_by(headers.get(ABORT_PERCENTAGE))

    def status_for(self, headers: Headers) -> tuple[int, int | None] | None:
        """(HTTP status, gRPC status or None) of the abort, None for no abort (Envoy's
        abortStatus: an HTTP status wins; a gRPC status answers HTTP 200)."""
        http_status, grpc_status = self.http_status, self.grpc_status
        if self.from_headers:
            code = parse_unsigned(headers.get(ABORT_REQUEST))
            http_status = code if code is not None and 200 <= code < 600 else None
            grpc_status = parse_unsigned(headers.get(ABORT_GRPC_REQUEST))
        if http_status is not None:
            return http_status, None
        if grpc_status is not None:
            return 200, grpc_status
        return None


@dataclass(frozen=True)
class RateLimitFault:
    fixed_kbps: int | None  # None: header_limit
    percentage: Percentage

    def percentage_for(self, headers: Headers) -> Percentage:
        if self.fixed_kbps is not None:
            return self.percentage
        return self.percentage.lowered_by(headers.get(THROUGHPUT_PERCENTAGE))

    def kbps(self, headers: Headers) -> int | None:
        if self.fixed_kbps is not None:
            return self.fixed_kbps
        value = parse_unsigned(headers.get(THROUGHPUT_RESPONSE))
        return value or None


@dataclass(frozen=True)
class FaultSettings:
    delay: DelayFault | None = None
    abort: AbortFault | None = None
    upstream_cluster: str = ""
    headers: tuple[HeaderMatcher, ...] = ()
    downstream_nodes: frozenset[str] = frozenset()
    max_active_faults: int | None = None  # None: no limit
    response_rate_limit: RateLimitFault | None = None
    disable_downstream_cluster_stats: bool = False


_RUNTIME_KEYS = {"delay_percent_runtime", "abort_percent_runtime", "delay_duration_runtime",
                 "abort_http_status_runtime", "max_active_faults_runtime",
                 "response_rate_limit_percent_runtime", "abort_grpc_status_runtime"}
_FIELDS = {"delay", "abort", "upstream_cluster", "headers", "downstream_nodes",
           "max_active_faults", "response_rate_limit", "disable_downstream_cluster_stats"}


def _percentage(message: Any) -> Percentage:
    fraction = message.percentage
    return Percentage(fraction.numerator, _DENOMINATORS[fraction.denominator])


def _delay(message: Any) -> DelayFault:
    reject_unsupported(message, {"fixed_delay", "header_delay", "percentage"})
    kind = message.WhichOneof("fault_delay_secifier")  # sic, in Envoy's proto
    if kind == "fixed_delay":
        delay = message.fixed_delay
        if delay.seconds < 0 or (delay.seconds == 0 and delay.nanos <= 0):
            raise ConfigError("must be greater than 0s", field="fixed_delay")
        # PROTOBUF_GET_MS_REQUIRED: whole milliseconds (under 1 ms: no delay).
        return DelayFault(delay.seconds * 1000 + delay.nanos // 1_000_000, _percentage(message))
    if kind == "header_delay":
        return DelayFault(None, _percentage(message))
    raise ConfigError("fixed_delay or header_delay is required", field="fault_delay_secifier")


def _abort(message: Any) -> AbortFault:
    reject_unsupported(message, {"http_status", "grpc_status", "header_abort", "percentage"})
    kind = message.WhichOneof("error_type")
    if kind == "http_status":
        if not 200 <= message.http_status < 600:
            raise ConfigError("must be in [200, 600)", field="http_status")
        return AbortFault(message.http_status, None, False, _percentage(message))
    if kind == "grpc_status":
        return AbortFault(None, message.grpc_status, False, _percentage(message))
    if kind == "header_abort":
        return AbortFault(None, None, True, _percentage(message))
    raise ConfigError("http_status, grpc_status or header_abort is required", field="error_type")


def _rate_limit(message: Any) -> RateLimitFault:
    reject_unsupported(message, {"fixed_limit", "header_limit", "percentage"})
    kind = message.WhichOneof("limit_type")
    if kind == "fixed_limit":
        if message.fixed_limit.limit_kbps < 1:
            raise ConfigError("must be at least 1", field="fixed_limit.limit_kbps")
        return RateLimitFault(message.fixed_limit.limit_kbps, _percentage(message))
    if kind == "header_limit":
        return RateLimitFault(None, _percentage(message))
    raise ConfigError("fixed_limit or header_limit is required", field="limit_type")


def translate_fault(message: Message) -> FaultSettings:
    """extensions.filters.http.fault.v3.HTTPFault, the filter's config and its per-route one."""
    m: Any = message
    reject_unsupported(m, _FIELDS | _RUNTIME_KEYS)
    return FaultSettings(
        delay=within("delay", _delay, m.delay) if m.HasField("delay") else None,
        abort=within("abort", _abort, m.abort) if m.HasField("abort") else None,
        upstream_cluster=m.upstream_cluster,
        headers=tuple(within(f"headers[{index}]", translate_header_matcher, header)
                      for index, header in enumerate(m.headers)),
        downstream_nodes=frozenset(m.downstream_nodes),
        max_active_faults=m.max_active_faults.value if m.HasField("max_active_faults")
        else None,
        response_rate_limit=within("response_rate_limit", _rate_limit, m.response_rate_limit)
        if m.HasField("response_rate_limit") else None,
        disable_downstream_cluster_stats=m.disable_downstream_cluster_stats,
    )
