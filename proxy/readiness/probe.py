"""The application's readiness probe, sans-I/O: settings and the success/failure state.

Settings come from the bootstrap's `node.metadata.readiness_probe` (written by `pointsman
sidecar --readiness-port`), shaped as a Kubernetes readinessProbe (core/v1 Probe, the shape
Istio's WorkloadGroup `probe` also takes): `tcpSocket: {port, host}` or `httpGet: {port, host,
path}`, `initialDelaySeconds`, `periodSeconds` (default 10), `timeoutSeconds` (1),
`successThreshold` (1), `failureThreshold` (3). The node must also say `health_reports: true`,
what the control plane reads to wait for the reports (controlplane/sources/readiness.py).

The state follows Kubernetes' prober (pkg/kubelet/prober/worker.go): the application starts
not ready; `successThreshold` consecutive successes make it ready, `failureThreshold`
consecutive failures make it not ready. Only changes are reported (as istio-agent's
WorkloadHealthChecker does), the first one as soon as a threshold is reached.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError

FIELD = "node.metadata.readiness_probe"
HEALTH_REPORTS = "health_reports"  # controlplane/sources/readiness.py
_KNOWN = {"tcpSocket", "httpGet", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
          "successThreshold", "failureThreshold"}


@dataclass(frozen=True)
class ProbeSettings:
    host: str
    port: int
    path: str | None = None  # httpGet: GET this path, 200-399 is a success; None: TCP connect
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    def __str__(self) -> str:
        what = f"GET http://{self.host}:{self.port}{self.path}" if self.path is not None \
            else f"TCP {self.host}:{self.port}"
        return (f"{what} every {self.period:g}s (ready after {self.success_threshold}, "
                f"not ready after {self.failure_threshold})")


@dataclass(frozen=True)
class HealthChanged:
    healthy: bool
    message: str = ""  # why not, when not healthy


class ReadinessState:
    """Consecutive results -> ready or not; `now` is passed in, nothing is awaited."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.healthy: bool | None = None  # None: no threshold reached yet (not ready)
        self.successes = 0
        self.failures = 0
        self.next_at = 0.0

    def __repr__(self) -> str:
        return (f"ReadinessState(healthy={self.healthy}, successes={self.successes}, "
                f"failures={self.failures}, next_at={self.next_at:.3f})")

    def start(self, now: float) -> None:
        self.next_at = now + self.settings.initial_delay

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def probed(self, started: float, error: str | None) -> HealthChanged | None:
        """One probe's result (`error` None: success); the change to report, if any. The next
        probe is due a period after this one started (Kubernetes' ticker)."""
        self.next_at = started + self.settings.period
        if error is None:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.settings.success_threshold and self.healthy is not True:
                self.healthy = True
                return HealthChanged(True)
            return None
        self.successes, self.failures = 0, self.failures + 1
        if self.failures >= self.settings.failure_threshold and self.healthy is not False:
            self.healthy = False
            return HealthChanged(False, error)
        return None


def probe_from_metadata(metadata: dict[str, Any]) -> ProbeSettings | None:
    """The probe of a node's metadata (a dict of its Struct); None without one. ConfigError
    naming the field when it is malformed, or when `health_reports` does not match it."""
    raw = metadata.get("readiness_probe")
    reports = metadata.get(HEALTH_REPORTS, False)
    if raw is None:
        if reports is True:
            raise ConfigError("health_reports is true but there is no readiness_probe: the "
                              "control plane would never make this node an endpoint",
                              field=f"node.metadata.{HEALTH_REPORTS}")
        return None
    if reports is not True:
        raise ConfigError("a readiness_probe needs health_reports: true (the control plane "
                          "waits for the reports only then)",
                          field=f"node.metadata.{HEALTH_REPORTS}")
    if not isinstance(raw, dict):
        raise ConfigError("must be an object (a Kubernetes readinessProbe)", field=FIELD)
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ConfigError("is not supported", field=f"{FIELD}.{unknown[0]}")
    host, port, path = _target(raw)
    return ProbeSettings(
        host=host, port=port, path=path,
        initial_delay=_number(raw, "initialDelaySeconds", 0.0, minimum=0.0),
        period=_number(raw, "periodSeconds", 10.0, minimum=0.001),
        timeout=_number(raw, "timeoutSeconds", 1.0, minimum=0.001),
        success_threshold=int(_number(raw, "successThreshold", 1, minimum=1, integer=True)),
        failure_threshold=int(_number(raw, "failureThreshold", 3, minimum=1, integer=True)))


def _target(raw: dict[str, Any]) -> tuple[str, int, str | None]:
    kinds = [kind for kind in ("tcpSocket", "httpGet") if kind in raw]
    if len(kinds) != 1:
        raise ConfigError("exactly one of tcpSocket and httpGet is required", field=FIELD)
    kind = kinds[0]
    where = f"{FIELD}.{kind}"
    target = raw[kind]
    if not isinstance(target, dict):
        raise ConfigError("must be an object", field=where)
    allowed = {"port", "host"} | ({"path"} if kind == "httpGet" else set())
    unknown = sorted(set(target) - allowed)
    if unknown:
        raise ConfigError("is not supported", field=f"{where}.{unknown[0]}")
    port = target.get("port")
    if not isinstance(port, int | float) or isinstance(port, bool) or port != int(port) \
            or not 0 < port < 65536:
        raise ConfigError("must be a port number, 1-65535", field=f"{where}.port")
    host = target.get("host", "127.0.0.1")
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ConfigError(f"{host!r} is not an IP address", field=f"{where}.host") from None
    path = None
    if kind == "httpGet":
        path = target.get("path", "/")
        if not isinstance(path, str) or not path.startswith("/") or any(
                ord(char) < 33 or ord(char) == 127 for char in path):
            raise ConfigError("must be an absolute path (RFC 9112 origin-form)",
                              field=f"{where}.path")
    return host, int(port), path


def _number(raw: dict[str, Any], name: str, default: float, *, minimum: float,
            integer: bool = False) -> float:
    value = raw.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < minimum \
            or (integer and value != int(value)):
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"must be {kind} >= {minimum:g}", field=f"{FIELD}.{name}")
    return float(value)
