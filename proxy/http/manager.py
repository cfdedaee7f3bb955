"""What one HTTP connection manager (one filter chain's) gives its downstream connections and
their streams, and what one connection is: the narrow, read-mostly context a stream works in
(proxy.http.active_stream), apart from the connection that writes for it.

`HttpManager` is built once per filter chain by proxy.network.http_connection_manager:
settings, the current route configuration (inline or the latest RDS one), the HTTP filters'
makers, the router, the tracer, the stats (counter objects built once per name) and the
stream log hook. `ConnectionInfo` holds one downstream connection's facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.http.filter import FilterMaker
from proxy.http.router import Router
from proxy.http.settings import HcmSettings
from proxy.model.route import RouteConfig
from proxy.stats import Counter, Stats


@dataclass(eq=False)
class HttpManager:
    settings: HcmSettings
    route_config: Callable[[], RouteConfig | None]
    filter_makers: list[FilterMaker]
    router: Router
    tracer: Any = None  # proxy.observability Tracer, or None
    stats: Stats | None = None
    # Called with each finished stream (access logs, spans, metrics); exceptions are logged.
    on_stream_log: Callable[[Any], None] | None = None
    _counters: dict[str, Counter] = field(default_factory=dict)

    def count(self, name: str) -> None:
        """Increment http.<stat_prefix>.<name> (the counter is looked up once per name)."""
        counter = self._counters.get(name)
        if counter is None:
            if self.stats is None:
                return
            counter = self.stats.counter(f"http.{self.settings.stat_prefix}.{name}")
            self._counters[name] = counter
        counter.inc()


@dataclass(eq=False, slots=True)
class ConnectionInfo:
    """One downstream connection, as its streams see it."""

    remote_address: tuple[str, int]
    local_address: tuple[str, int]
    connection_id: int
    scheme: str = "http"  # "https" behind TLS
    # The listener's per_connection_buffer_limit_bytes: request bytes one stream may queue
    # before we stop reading the socket (HTTP/1.1) or stop opening the window (HTTP/2).
    buffer_limit: int = 1024 * 1024
    # HttpStream.connection_state: Envoy's filter state with LifeSpan::Connection.
    filter_state: dict[Any, Any] = field(default_factory=dict)
