"""`gateway.envoyproxy.io/v1alpha1 ClientTrafficPolicy` (Envoy Gateway v1.7 api/v1alpha1:
clienttrafficpolicy_types.go, timeout_types.go ClientTimeout): what a Gateway's listeners do
with their clients' connections. Supported: `timeout.http` (requestReceivedTimeout,
idleTimeout, streamIdleTimeout: the HTTP connection manager's request_timeout,
common_http_protocol_options.idle_timeout and stream_idle_timeout; a stream idle timeout is
what bounds an idle WebSocket tunnel) and `timeout.tcp.idleTimeout` (tcp_proxy idle_timeout).
Targets: Gateways (a listener with sectionName). Every other field is refused by path."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import Fields
from controlplane.mesh.kinds.policy import check_target_kinds, parse_targets
from controlplane.mesh.kinds.refs import TargetRef


@dataclass(frozen=True)
class ClientTimeouts:
    request_received: float | None = None
    idle: float | None = None
    stream_idle: float | None = None
    tcp_idle: float | None = None


@dataclass(frozen=True)
class ClientTrafficPolicySpec:
    targets: tuple[TargetRef, ...]
    timeouts: ClientTimeouts | None = None


def parse_clienttrafficpolicy_spec(fields: Fields) -> ClientTrafficPolicySpec:
    targets = parse_targets(fields)
    check_target_kinds(fields, targets, "targetRefs", ("Gateway",),
                       "a ClientTrafficPolicy applies to a Gateway's listeners")
    spec = ClientTrafficPolicySpec(targets, fields.obj("timeout", _timeout))
    fields.done(unsupported=(
        "targetSelectors", "tcpKeepalive", "enableProxyProtocol", "proxyProtocol",
        "clientIPDetection", "tls", "path", "headers", "connection", "http1", "http2", "http3",
        "healthCheck"))
    return spec


def _timeout(fields: Fields) -> ClientTimeouts:
    http = fields.obj("http", _http) or ClientTimeouts()
    tcp = fields.obj("tcp", lambda inner: inner.duration("idleTimeout"))
    return ClientTimeouts(http.request_received, http.idle, http.stream_idle, tcp)


def _http(fields: Fields) -> ClientTimeouts:
    return ClientTimeouts(fields.duration("requestReceivedTimeout"),
                          fields.duration("idleTimeout"), fields.duration("streamIdleTimeout"))
