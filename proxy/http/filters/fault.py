"""`envoy.filters.http.fault`: delay, abort and slow down requests, as Envoy 1.40's
fault_filter.cc (doc: configuration/http/http_filters/fault_filter).

The settings are the most specific `HTTPFault` per-route config filed under the filter's name
(route, virtual host, route configuration), else the filter's own. A request is subject to
faults when the route's cluster is `upstream_cluster` (if set), its
x-envoy-downstream-service-node is one of `downstream_nodes` (if set) and every `headers`
matcher matches. Then, in Envoy's order:
1. response_rate_limit: the response body goes out at N KiB/s (`proxy.http.stream_rate_limiter`);
2. delay: the request waits (flag DI), its body held under flow control;
3. abort, drawn after the delay if there was one: a local reply "fault filter abort"
   (details fault_filter_abort, flag FI) with the HTTP status, or HTTP 200 with a gRPC status.
Each fault first takes an "active fault" (one per request, however many faults it gets),
refused when `http.<stat_prefix>.fault.active_faults` is at `max_active_faults`
(counting `faults_overflow`); a delay gives it back when it ends unless a rate limit holds it.
Stats (`http.<stat_prefix>.fault.`): delays_injected, aborts_injected, response_rl_injected,
faults_overflow, active_faults, and `<downstream cluster>.delays_injected` /
`.aborts_injected` for requests with x-envoy-downstream-service-cluster unless
disable_downstream_cluster_stats. Under `--concurrency N` each worker counts its own active
faults (Envoy's gauge is process-wide).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from proxy.codec.headers import Headers
from proxy.context import ServerContext
from proxy.http.filter import (
    FilterMaker,
    HttpFilter,
    HttpStream,
    LocalReply,
    Paced,
    register_http_filter,
)
from proxy.http.filters.fault_config import FaultSettings, translate_fault
from proxy.http.routing import header_matches, per_filter_configs, resolve_route, route_cluster
from proxy.http.stream_rate_limiter import RateLimiter, paced
from proxy.stats import Stats

NAME = "envoy.filters.http.fault"
ABORT_BODY = "fault filter abort"


@dataclass(frozen=True)
class FaultShared:
    """What every stream of one filter chain shares: settings, stats, randomness, clock."""

    name: str
    settings: FaultSettings
    stats: Stats
    prefix: str  # http.<stat_prefix>.fault.
    rng: random.Random
    clock: Callable[[], float]

    def count(self, name: str) -> None:
        self.stats.counter(self.prefix + name).inc()

    @property
    def active_faults(self) -> Any:
        return self.stats.gauge(self.prefix + "active_faults")


class FaultFilter(HttpFilter):
    __slots__ = ("active", "downstream_cluster", "limiter", "settings", "shared")

    def __init__(self, shared: FaultShared) -> None:
        self.shared = shared
        self.settings = shared.settings
        self.active = False  # this request holds an active fault
        self.downstream_cluster = ""
        self.limiter: RateLimiter | None = None

    # --- request -------------------------------------------------------------------------------

    def on_request_headers(self, stream: HttpStream) -> Any:
        settings = self.settings = self._settings_for(stream)
        headers = stream.request.headers
        if not self._applies(stream, settings, headers):
            return None
        self.downstream_cluster = headers.get("x-envoy-downstream-service-cluster") or ""
        self._maybe_limit_response(settings, headers)
        delay_ms = self._delay_ms(settings, headers)
        if delay_ms is not None and self._try_activate():
            self._count_injected("delays_injected")
            stream.set_flag("DI")
            return self._delayed(stream, delay_ms / 1000)
        return self._abort(settings, headers)

    def _settings_for(self, stream: HttpStream) -> FaultSettings:
        for config in per_filter_configs(stream, self.shared.name, NAME):
            if isinstance(config, FaultSettings):
                return config  # the most specific replaces the filter's settings
        return self.shared.settings

    @staticmethod
    def _applies(stream: HttpStream, settings: FaultSettings, headers: Headers) -> bool:
        if settings.upstream_cluster:
            route = resolve_route(stream)
            if route is None or route_cluster(stream) != settings.upstream_cluster:
                return False
        if settings.downstream_nodes:
            node = headers.get("x-envoy-downstream-service-node")
            if node is None or node not in settings.downstream_nodes:
                return False
        return all(header_matches(matcher, stream.request) for matcher in settings.headers)

    def _maybe_limit_response(self, settings: FaultSettings, headers: Headers) -> None:
        limit = settings.response_rate_limit
        if limit is None or not limit.percentage_for(headers).draw(self.shared.rng):
            return
        kbps = limit.kbps(headers)
        if kbps is None or not self._try_activate():
            return
        self.shared.count("response_rl_injected")
        self.limiter = RateLimiter(kbps, self.shared.clock())

    def _delay_ms(self, settings: FaultSettings, headers: Headers) -> int | None:
        delay = settings.delay
        if delay is None or not delay.percentage_for(headers).draw(self.shared.rng):
            return None
        duration = delay.duration_ms(headers)
        return duration if duration else None  # Envoy delays only for more than 0 ms

    async def _delayed(self, stream: HttpStream, seconds: float) -> LocalReply | None:
        await asyncio.sleep(seconds)
        reply = self._abort(self.settings, stream.request.headers)
        if reply is None and self.settings.response_rate_limit is None:
            self._release()  # the delay is over and no other fault holds the request
        return reply

    def _abort(self, settings: FaultSettings, headers: Headers) -> LocalReply | None:
        abort = settings.abort
        if abort is None or not abort.percentage_for(headers).draw(self.shared.rng):
            return None
        status = abort.status_for(headers)
        if status is None or not self._try_activate():
            return None
        self._count_injected("aborts_injected")
        http_status, grpc_status = status
        return LocalReply(http_status, ABORT_BODY, details="fault_filter_abort", flag="FI",
                          grpc_status=grpc_status)

    # --- active faults and stats ---------------------------------------------------------------

    def _try_activate(self) -> bool:
        """One active fault per request; refused at max_active_faults (Envoy's
        tryIncActiveFaults: a fuzzy limit, checked only when a fault is about to start)."""
        if self.active:
            return True
        limit = self.settings.max_active_faults
        gauge = self.shared.active_faults
        if limit is not None and gauge.value >= limit:
            self.shared.count("faults_overflow")
            return False
        gauge.inc()
        self.active = True
        return True

    def _release(self) -> None:
        if self.active:
            self.shared.active_faults.dec()
            self.active = False

    def _count_injected(self, name: str) -> None:
        if self.downstream_cluster and not self.settings.disable_downstream_cluster_stats:
            self.shared.count(f"{self.downstream_cluster}.{name}")
        self.shared.count(name)

    # --- response ------------------------------------------------------------------------------

    def on_response_data(self, stream: HttpStream, data: bytes,
                         end_stream: bool) -> bytes | Paced:
        if self.limiter is None:
            return data
        return Paced(paced(self.limiter, data, end_stream, self.shared.clock))

    def on_complete(self, stream: HttpStream) -> None:
        self._release()


class FaultFactory:
    name = NAME
    config_type = "envoy.extensions.filters.http.fault.v3.HTTPFault"
    per_route_type = config_type  # the per-route config is an HTTPFault too

    def translate(self, message: Message) -> FaultSettings:
        return translate_fault(message)

    def translate_per_route(self, message: Message) -> FaultSettings:
        return translate_fault(message)

    def create(self, config: FaultSettings, context: ServerContext, *,
               stat_prefix: str = "", name: str = "",
               clock: Callable[[], float] = time.monotonic,
               rng: random.Random | None = None) -> FilterMaker:
        prefix = f"http.{stat_prefix}.fault."
        for counter in ("delays_injected", "aborts_injected", "faults_overflow",
                        "response_rl_injected"):
            context.stats.counter(prefix + counter)
        context.stats.gauge(prefix + "active_faults")
        shared = FaultShared(name or NAME, config, context.stats, prefix,
                             rng or random.Random(), clock)
        return lambda: FaultFilter(shared)


register_http_filter(FaultFactory())
