"""A cluster's circuit breakers, the model (config.cluster.v3.CircuitBreakers; Envoy
intro/arch_overview/upstream/circuit_breaking): one set of limits per routing priority
(DEFAULT, HIGH), with Envoy's defaults (1024 connections, pending requests and requests, 3
retries). `proxy.upstream.circuit_breakers` enforces them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError, unsupported
from proxy.model.fields import reject_unsupported


class RoutingPriority(enum.IntEnum):
    DEFAULT = 0
    HIGH = 1


class Resource(enum.Enum):
    CONNECTIONS = "cx"
    PENDING_REQUESTS = "rq_pending"
    REQUESTS = "rq"
    RETRIES = "rq_retry"

    # Members are singletons: identity hashing (in C) instead of Enum's Python-level
    # hash of the name, which ran ~25 times per proxied request.
    __hash__ = object.__hash__


@dataclass(frozen=True)
class Thresholds:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3
    track_remaining: bool = False

    def limit(self, resource: Resource) -> int:
        if resource is Resource.REQUESTS:
            return self.max_requests
        if resource is Resource.PENDING_REQUESTS:
            return self.max_pending_requests
        if resource is Resource.CONNECTIONS:
            return self.max_connections
        return self.max_retries


@dataclass(frozen=True)
class CircuitBreakers:
    default: Thresholds = Thresholds()
    high: Thresholds = Thresholds()

    def for_priority(self, priority: RoutingPriority) -> Thresholds:
        return self.high if priority is RoutingPriority.HIGH else self.default


_THRESHOLD_FIELDS = {"priority", "max_connections", "max_pending_requests", "max_requests",
                     "max_retries", "track_remaining"}


def translate_circuit_breakers(message: Any) -> CircuitBreakers:
    """config.cluster.v3.CircuitBreakers -> model. `per_host_thresholds` and retry budgets are
    refused by name."""
    reject_unsupported(message, {"thresholds"})
    by_priority: dict[int, Thresholds] = {}
    for index, thresholds in enumerate(message.thresholds):
        prefix = f"thresholds[{index}]."
        if thresholds.HasField("retry_budget"):
            raise unsupported(f"{prefix}retry_budget")
        reject_unsupported(thresholds, _THRESHOLD_FIELDS, prefix=prefix)
        if thresholds.priority in by_priority:
            raise ConfigError("duplicate priority", field=f"{prefix}priority")
        by_priority[thresholds.priority] = Thresholds(
            max_connections=_value(thresholds, "max_connections", 1024),
            max_pending_requests=_value(thresholds, "max_pending_requests", 1024),
            max_requests=_value(thresholds, "max_requests", 1024),
            max_retries=_value(thresholds, "max_retries", 3),
            track_remaining=thresholds.track_remaining,
        )
    return CircuitBreakers(
        default=by_priority.get(RoutingPriority.DEFAULT, Thresholds()),
        high=by_priority.get(RoutingPriority.HIGH, Thresholds()),
    )


def _value(message: Any, name: str, default: int) -> int:
    return int(getattr(message, name).value) if message.HasField(name) else default
