"""When a mesh sidecar can be an endpoint: what each stream has ACKed and, for a sidecar that
reports its application's health, what it last reported. Pure bookkeeping, no I/O.

A sidecar is ready once it has ACKed its listeners and, when its view holds Secrets, its
Secrets too (sources/mesh.py says why). A sidecar whose node metadata says
`health_reports: true` (`pointsman sidecar --readiness-port`, docs/mesh.md) must also have
reported its application healthy (controlplane/protocol/health.py), and stops being ready
when it reports it unhealthy, as Kubernetes leaves a pod whose readiness probe fails out of
its EndpointSlices and istiod leaves an unhealthy WorkloadEntry out of EDS. A node that does
not report health (Envoy, an older sidecar) is ready on its ACKs alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2

from controlplane.mesh.compile.node import NodeError, metadata_of
from controlplane.protocol.events import HealthReported

HEALTH_REPORTS = "health_reports"  # node.metadata key: the sidecar reports its app's health


def reports_health(node: base_pb2.Node) -> bool:
    """`node.metadata.health_reports`: true or false (absent: false); NodeError otherwise."""
    value = metadata_of(node).get(HEALTH_REPORTS, False)
    if not isinstance(value, bool):
        raise NodeError(f"node.metadata.{HEALTH_REPORTS}: must be true or false, "
                        f"not {value!r}")
    return value


@dataclass
class StreamReadiness:
    """One stream: the types it ACKed, whether it reports health, its last report."""

    acked: set[str] = field(default_factory=set)
    reports_health: bool = False
    health: HealthReported | None = None  # None: nothing reported yet

    @property
    def healthy(self) -> bool:
        """Healthy enough to be an endpoint: always when it does not report health."""
        if not self.reports_health:
            return True
        return self.health is not None and self.health.healthy

    def status(self) -> tuple[str, str]:
        """For `pointsman status`: "" (it does not report health), NOT_REPORTED, HEALTHY or
        UNHEALTHY; and the report's message."""
        if not self.reports_health:
            return "", ""
        if self.health is None:
            return "NOT_REPORTED", ""
        return ("HEALTHY" if self.health.healthy else "UNHEALTHY"), self.health.message
