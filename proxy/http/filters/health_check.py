"""`envoy.filters.http.health_check`: answer health checks locally or pass them through.

Envoy doc: configuration/http/http_filters/health_check_filter. A request matching every
`headers` matcher is a health check. Non-pass-through mode answers 200 itself (503 when the
cluster_min_healthy_percentages are not met); pass-through mode forwards it and only marks it
(`x-envoy-immediate-health-check-fail` is not modelled). `cache_time` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.context import ServerContext
from proxy.http.filter import FilterMaker, HttpFilter, HttpStream, LocalReply, register_http_filter
from proxy.http.routing import header_matches
from proxy.model.fields import reject_unsupported
from proxy.model.matchers import HeaderMatcher, translate_header_matcher


@dataclass(frozen=True)
class HealthCheckConfig:
    pass_through: bool
    headers: tuple[HeaderMatcher, ...]
    min_healthy: tuple[tuple[str, float], ...]


def translate(message: Message) -> HealthCheckConfig:
    m: Any = message
    reject_unsupported(m, {"pass_through_mode", "headers", "cluster_min_healthy_percentages"})
    if not m.HasField("pass_through_mode"):
        raise ConfigError("pass_through_mode is required", field="pass_through_mode")
    headers = []
    for index, header in enumerate(m.headers):
        try:
            headers.append(translate_header_matcher(header))
        except ConfigError as error:
            raise error.within(field=f"headers[{index}]") from error
    minimums = tuple((name, value.value)
                     for name, value in sorted(m.cluster_min_healthy_percentages.items()))
    return HealthCheckConfig(m.pass_through_mode.value, tuple(headers), minimums)


class HealthCheckFilter(HttpFilter):
    def __init__(self, config: HealthCheckConfig, cluster_manager: Any) -> None:
        self.config = config
        self.cluster_manager = cluster_manager

    def on_request_headers(self, stream: HttpStream) -> LocalReply | None:
        if not all(header_matches(m, stream.request) for m in self.config.headers):
            return None
        stream.state["health_check"] = True
        if self.config.pass_through:
            return None
        if not self._clusters_healthy():
            return LocalReply(503, details="health_check_failed")
        return LocalReply(200, details="health_check_ok")

    def _clusters_healthy(self) -> bool:
        for name, minimum in self.config.min_healthy:
            runtime = self.cluster_manager.get(name) if self.cluster_manager else None
            hosts = list(getattr(runtime, "hosts", []) or []) if runtime else []
            if not hosts:
                return False
            healthy = sum(1 for host in hosts if host.healthy)
            if 100.0 * healthy / len(hosts) < minimum:
                return False
        return True


class HealthCheckFactory:
    name = "envoy.filters.http.health_check"
    config_type = "envoy.extensions.filters.http.health_check.v3.HealthCheck"

    def translate(self, message: Message) -> HealthCheckConfig:
        return translate(message)

    def create(self, config: HealthCheckConfig, context: ServerContext, *,
               stat_prefix: str = "", name: str = "") -> FilterMaker:
        return lambda: HealthCheckFilter(config, context.cluster_manager)


register_http_filter(HealthCheckFactory())
