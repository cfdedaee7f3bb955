"""`gateway.envoyproxy.io/v1alpha1 BackendTrafficPolicy` (Envoy Gateway v1.7 api/v1alpha1:
backendtrafficpolicy_types.go, loadbalancer_types.go, healthcheck_types.go,
circuitbreaker_types.go, retry_types.go, timeout_types.go, ratelimit_types.go,
fault_injection.go). Fields supported: loadBalancer (RoundRobin, LeastRequest, Random,
ConsistentHash by SourceIP, Header(s), Cookie, QueryParams), healthCheck (active HTTP, TCP,
GRPC; passive; panicThreshold), circuitBreaker, retry, timeout, rateLimit.local (one rule
without clientSelectors), faultInjection. Every other field is refused by path."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from controlplane.mesh.fields import Fields, Item
from controlplane.mesh.kinds.policy import check_target_kinds, parse_targets
from controlplane.mesh.kinds.refs import TargetRef

# Envoy Gateway's defaults where a field is omitted (the +kubebuilder:default markers).
UNIT_SECONDS = {"Second": 1, "Minute": 60, "Hour": 3600, "Day": 86400}
TRIGGERS = ("5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
            "retriable-4xx", "refused-stream", "retriable-status-codes", "cancelled",
            "deadline-exceeded", "internal", "resource-exhausted", "unavailable")


@dataclass(frozen=True)
class HashCookie:
    name: str
    ttl: float | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConsistentHash:
    kind: str  # SourceIP | Header | Headers | Cookie | QueryParams
    headers: tuple[str, ...] = ()
    cookie: HashCookie | None = None
    query_params: tuple[str, ...] = ()
    table_size: int = 65537


@dataclass(frozen=True)
class LoadBalancer:
    kind: str  # RoundRobin | LeastRequest | Random | ConsistentHash
    consistent_hash: ConsistentHash | None = None


@dataclass(frozen=True)
class ActiveHealthCheck:
    kind: str  # HTTP | TCP | GRPC
    timeout: float = 1.0
    interval: float = 3.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 1
    initial_jitter: float | None = None
    http_path: str = ""
    http_hostname: str | None = None
    http_method: str | None = None
    http_statuses: tuple[int, ...] = (200,)
    http_expected: bytes | None = None
    tcp_send: bytes | None = None
    tcp_receive: bytes | None = None
    grpc_service: str | None = None


@dataclass(frozen=True)
class PassiveHealthCheck:
    split_external_local_origin_errors: bool = False
    interval: float = 3.0
    consecutive_local_origin_failures: int = 5
    consecutive_gateway_errors: int | None = None
    consecutive_5xx: int = 5
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10
    failure_percentage_threshold: int | None = None


@dataclass(frozen=True)
class HealthCheck:
    active: ActiveHealthCheck | None = None
    passive: PassiveHealthCheck | None = None
    panic_threshold: int | None = None


@dataclass(frozen=True)
class CircuitBreaker:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_parallel_requests: int = 1024
    max_parallel_retries: int = 1024


@dataclass(frozen=True)
class RetryPolicy:
    num_retries: int = 2
    triggers: tuple[str, ...] = ("connect-failure", "refused-stream", "unavailable",
                                 "cancelled", "retriable-status-codes")
    status_codes: tuple[int, ...] = (503,)
    per_try_timeout: float | None = None
    backoff_base: float | None = None
    backoff_max: float | None = None


@dataclass(frozen=True)
class TimeoutPolicy:
    connect_timeout: float | None = None
    connection_idle_timeout: float | None = None
    request_timeout: float | None = None


@dataclass(frozen=True)
class LocalRateLimit:
    requests: int
    unit_seconds: int


@dataclass(frozen=True)
class FaultInjection:
    delay: float | None = None
    delay_percent: float = 100.0
    abort_http_status: int | None = None
    abort_grpc_status: int | None = None
    abort_percent: float = 100.0


@dataclass(frozen=True)
class BackendTrafficPolicySpec:
    targets: tuple[TargetRef, ...]
    load_balancer: LoadBalancer | None = None
    health_check: HealthCheck | None = None
    circuit_breaker: CircuitBreaker | None = None
    retry: RetryPolicy | None = None
    timeout: TimeoutPolicy | None = None
    rate_limit: LocalRateLimit | None = None
    fault: FaultInjection | None = None


def parse_backendtrafficpolicy_spec(fields: Fields) -> BackendTrafficPolicySpec:
    spec = BackendTrafficPolicySpec(
        targets=parse_targets(fields),
        load_balancer=fields.obj("loadBalancer", _load_balancer),
        health_check=fields.obj("healthCheck", _health_check),
        circuit_breaker=fields.obj("circuitBreaker", _circuit_breaker),
        retry=fields.obj("retry", _retry),
        timeout=fields.obj("timeout", _timeout),
        rate_limit=fields.obj("rateLimit", _rate_limit),
        fault=fields.obj("faultInjection", _fault))
    fields.done(unsupported=(
        "targetSelectors", "mergeType", "useClientProtocol", "compression", "compressor",
        "responseOverride", "httpUpgrade", "requestBuffer", "telemetry", "proxyProtocol",
        "tcpKeepalive", "connection", "dns", "http2"))
    _check_targets(fields, spec)
    return spec


def _check_targets(fields: Fields, spec: BackendTrafficPolicySpec) -> None:
    if spec.rate_limit is not None:
        check_target_kinds(fields, spec.targets, "rateLimit", ("Service",),
                           "a local rate limit is enforced by the sidecars of a Service, on "
                           "the requests they accept (per-route limits need per-route filter "
                           "config, which the Pointsman sidecar does not implement)")
    http_only = ("Service", "Gateway", "HTTPRoute", "GRPCRoute")
    for feature, present in (("faultInjection", spec.fault is not None),
                             ("retry", spec.retry is not None),
                             ("timeout", spec.timeout is not None and (
                                 spec.timeout.request_timeout is not None
                                 or spec.timeout.connection_idle_timeout is not None))):
        if present:
            check_target_kinds(fields, spec.targets, feature, http_only,
                               "it applies to HTTP requests")


# ---- loadBalancer ---------------------------------------------------------------------------

def _load_balancer(fields: Fields) -> LoadBalancer:
    kind = fields.req_str("type", enum=("ConsistentHash", "LeastRequest", "Random",
                                        "RoundRobin"))
    hashing = fields.obj("consistentHash", _consistent_hash)
    if (kind == "ConsistentHash") != (hashing is not None):
        raise fields.error("consistentHash", "If LoadBalancer type is consistentHash, "
                                             "consistentHash field needs to be set (and only "
                                             "then)")
    fields.done(unsupported=("slowStart", "zoneAware", "endpointOverride"))
    return LoadBalancer(kind, hashing)


def _consistent_hash(fields: Fields) -> ConsistentHash:
    kind = fields.req_str("type", enum=("SourceIP", "Header", "Headers", "Cookie",
                                        "QueryParams"))
    single = fields.obj("header", _named)
    many = fields.obj_list("headers", _named, max_items=16)
    cookie = fields.obj("cookie", _cookie)
    params = fields.obj_list("queryParams", _named, max_items=16)
    table = fields.integer("tableSize", default=65537, minimum=2, maximum=5000011) or 65537
    wanted = {"Header": single is not None, "Headers": bool(many), "Cookie": cookie is not None,
              "QueryParams": bool(params)}
    for other, present in wanted.items():
        key = {"Header": "header", "Headers": "headers", "Cookie": "cookie",
               "QueryParams": "queryParams"}[other]
        if present != (kind == other):
            raise fields.error(key, f"If consistent hash type is {other}, the {key} field must "
                                    "be set (and only then)")
    headers = (single,) if single is not None else many
    return ConsistentHash(kind, headers, cookie, params, table)


def _named(fields: Fields) -> str:
    return fields.req_str("name", min_len=1)


def _cookie(fields: Fields) -> HashCookie:
    name = fields.req_str("name", min_len=1)
    ttl = fields.duration("ttl")
    attributes = fields.text_map("attributes")
    if attributes:
        raise fields.error("attributes", "cookie attributes are not supported by Pointsman")
    return HashCookie(name, ttl)


# ---- healthCheck ----------------------------------------------------------------------------

def _health_check(fields: Fields) -> HealthCheck:
    return HealthCheck(fields.obj("active", _active), fields.obj("passive", _passive),
                       fields.integer("panicThreshold", minimum=0, maximum=100))


def _active(fields: Fields) -> ActiveHealthCheck:
    kind = fields.req_str("type", enum=("HTTP", "TCP", "GRPC"))
    timeout = fields.duration("timeout")
    interval = fields.duration("interval")
    unhealthy = fields.integer("unhealthyThreshold", default=3, minimum=1) or 3
    healthy = fields.integer("healthyThreshold", default=1, minimum=1) or 1
    jitter = fields.duration("initialJitter")
    http = fields.obj("http", _http_check)
    tcp = fields.obj("tcp", _tcp_check)
    grpc = fields.obj("grpc", _grpc_check)
    for name, present, wanted in (("http", http is not None, kind == "HTTP"),
                                  ("tcp", tcp is not None, kind == "TCP")):
        if present != wanted:
            raise fields.error(name, f"If Health Checker type is {name.upper()}, {name} field "
                                     "needs to be set (and only then)")
    if grpc is not None and kind != "GRPC":
        raise fields.error("grpc", "The grpc field can only be set if the Health Checker type "
                                   "is GRPC.")
    check = ActiveHealthCheck(kind, timeout if timeout is not None else 1.0,
                              interval if interval is not None else 3.0, unhealthy, healthy,
                              jitter)
    if http is not None:
        path, hostname, method, statuses, expected = http
        return replace(check, http_path=path, http_hostname=hostname, http_method=method,
                        http_statuses=statuses, http_expected=expected)
    if tcp is not None:
        return replace(check, tcp_send=tcp[0], tcp_receive=tcp[1])
    if grpc is not None:
        return replace(check, grpc_service=grpc)
    return check


def _http_check(fields: Fields) -> tuple[str, str | None, str | None, tuple[int, ...],
                                         bytes | None]:
    path = fields.req_str("path", min_len=1, max_len=1024)
    hostname = fields.text("hostname", min_len=1, max_len=253)
    method = fields.text("method", enum=("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                        "TRACE", "PATCH"))
    statuses = fields.items("expectedStatuses", lambda item: item.integer(100, 599)) or (200,)
    fields.done(unsupported=("expectedResponse",))  # the sidecar checks status codes only
    return path, hostname, method, statuses, None


def _tcp_check(fields: Fields) -> tuple[bytes | None, bytes | None]:
    return fields.obj("send", _payload), fields.obj("receive", _payload)


def _grpc_check(fields: Fields) -> str | None:
    return fields.text("service")


def _payload(fields: Fields) -> bytes:
    kind = fields.req_str("type", enum=("Text", "Binary"))
    text = fields.text("text")
    binary = fields.text("binary")
    if (kind == "Text") != (text is not None) or (kind == "Binary") != (binary is not None):
        raise fields.error("type", "If payload type is Text, text field needs to be set; if "
                                   "Binary, binary")
    if text is not None:
        return text.encode()
    try:
        return base64.b64decode(binary or "", validate=True)
    except (binascii.Error, ValueError) as error:
        raise fields.error("binary", "is not valid base64") from error


def _passive(fields: Fields) -> PassiveHealthCheck:
    defaults = PassiveHealthCheck()
    interval = fields.duration("interval")
    ejection = fields.duration("baseEjectionTime")
    return PassiveHealthCheck(
        split_external_local_origin_errors=bool(fields.flag("splitExternalLocalOriginErrors",
                                                            default=False)),
        interval=defaults.interval if interval is None else interval,
        consecutive_local_origin_failures=_int(fields, "consecutiveLocalOriginFailures",
                                               defaults.consecutive_local_origin_failures),
        consecutive_gateway_errors=fields.integer("consecutiveGatewayErrors", minimum=0),
        consecutive_5xx=_int(fields, "consecutive5XxErrors", defaults.consecutive_5xx),
        base_ejection_time=defaults.base_ejection_time if ejection is None else ejection,
        max_ejection_percent=_int(fields, "maxEjectionPercent", defaults.max_ejection_percent,
                                  maximum=100),
        failure_percentage_threshold=fields.integer("failurePercentageThreshold", minimum=0,
                                                maximum=100))


def _int(fields: Fields, key: str, default: int, maximum: int | None = None) -> int:
    value = fields.integer(key, minimum=0, maximum=maximum)
    return default if value is None else value


# ---- circuitBreaker, retry, timeout -----------------------------------------------------------

def _circuit_breaker(fields: Fields) -> CircuitBreaker:
    limit = 4294967295
    breaker = CircuitBreaker(
        max_connections=_int(fields, "maxConnections", 1024, limit),
        max_pending_requests=_int(fields, "maxPendingRequests", 1024, limit),
        max_parallel_requests=_int(fields, "maxParallelRequests", 1024, limit),
        max_parallel_retries=_int(fields, "maxParallelRetries", 1024, limit))
    fields.done(unsupported=("maxRequestsPerConnection", "perEndpoint"))
    return breaker


def _retry(fields: Fields) -> RetryPolicy:
    defaults = RetryPolicy()
    retries = fields.integer("numRetries", minimum=0)
    triggers, codes = fields.obj("retryOn", _retry_on) or (defaults.triggers,
                                                           defaults.status_codes)
    per_try, base, maximum = fields.obj("perRetry", _per_retry) or (None, None, None)
    fields.done(unsupported=("numAttemptsPerPriority",))
    return RetryPolicy(defaults.num_retries if retries is None else retries, triggers, codes,
                       per_try, base, maximum)


def _retry_on(fields: Fields) -> tuple[tuple[str, ...], tuple[int, ...]]:
    triggers = fields.items("triggers", lambda item: item.text(enum=TRIGGERS))
    codes = fields.items("httpStatusCodes", lambda item: item.integer(100, 599))
    return triggers, codes


def _per_retry(fields: Fields) -> tuple[float | None, float | None, float | None]:
    timeout = fields.duration("timeout")
    base, maximum = fields.obj("backOff", _backoff) or (None, None)
    return timeout, base, maximum


def _backoff(fields: Fields) -> tuple[float | None, float | None]:
    base = fields.duration("baseInterval")
    maximum = fields.duration("maxInterval")
    if base is not None and base <= 0:
        raise fields.error("baseInterval", "must be greater than zero")
    if base is not None and maximum is not None and maximum < base:
        raise fields.error("maxInterval", "must be greater than or equal to the baseInterval")
    return base, maximum


def _timeout(fields: Fields) -> TimeoutPolicy:
    connect = fields.obj("tcp", lambda inner: inner.duration("connectTimeout"))
    idle, request = fields.obj("http", _http_timeout) or (None, None)
    if connect is not None and connect <= 0:
        raise fields.error("tcp", "connectTimeout must be greater than zero")
    return TimeoutPolicy(connect, idle, request)


def _http_timeout(fields: Fields) -> tuple[float | None, float | None]:
    idle = fields.duration("connectionIdleTimeout")
    request = fields.duration("requestTimeout")
    fields.done(unsupported=("maxConnectionDuration", "maxStreamDuration"))
    return idle, request


# ---- rateLimit, faultInjection ----------------------------------------------------------------

def _rate_limit(fields: Fields) -> LocalRateLimit:
    kind = fields.text("type", enum=("Local", "Global"))
    if kind == "Global":
        raise fields.error("type", "Global rate limits are not supported by Pointsman (Local "
                                   "is)")
    local = fields.obj("local", _local, required=True)
    assert local is not None
    fields.done(unsupported=("global",))
    return local


def _local(fields: Fields) -> LocalRateLimit:
    rules = fields.items("rules", _local_rule, required=True, min_items=1, max_items=16)
    if len(rules) > 1:
        raise fields.context.error((*fields.path, "rules", 1),
                                   "more than one local rule is not supported by Pointsman "
                                   "(one limit for all of the target's traffic is)")
    return rules[0]


def _local_rule(item: Item) -> LocalRateLimit:
    def parse(fields: Fields) -> LocalRateLimit:
        limit = fields.obj("limit", _limit, required=True)
        assert limit is not None
        fields.done(unsupported=("clientSelectors", "cost", "shadowMode", "name"))
        return limit
    return item.obj(parse)


def _limit(fields: Fields) -> LocalRateLimit:
    requests = fields.integer("requests", required=True, minimum=1, maximum=4294967295)
    unit = fields.req_str("unit", enum=tuple(UNIT_SECONDS))
    assert requests is not None
    return LocalRateLimit(requests, UNIT_SECONDS[unit])


def _fault(fields: Fields) -> FaultInjection:
    delay = fields.obj("delay", _delay)
    abort = fields.obj("abort", _abort)
    if delay is None and abort is None:
        raise fields.error(None, "Delay and abort faults are set at least one.")
    fault = FaultInjection()
    if delay is not None:
        fault = replace(fault, delay=delay[0], delay_percent=delay[1])
    if abort is not None:
        fault = replace(fault, abort_http_status=abort[0], abort_grpc_status=abort[1],
                               abort_percent=abort[2])
    return fault


def _delay(fields: Fields) -> tuple[float, float]:
    fixed = fields.duration("fixedDelay", required=True)
    assert fixed is not None
    percent = fields.number("percentage", default=100.0, minimum=0.0, maximum=100.0)
    return fixed, 100.0 if percent is None else percent


def _abort(fields: Fields) -> tuple[int | None, int | None, float]:
    http = fields.integer("httpStatus", minimum=200, maximum=600)
    grpc = fields.integer("grpcStatus", minimum=0, maximum=16)
    if (http is None) == (grpc is None):
        raise fields.error(None, "exactly one of httpStatus and grpcStatus must be set")
    percent = fields.number("percentage", default=100.0, minimum=0.0, maximum=100.0)
    return http, grpc, 100.0 if percent is None else percent
