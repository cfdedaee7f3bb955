"""The demo's mesh objects (docs/mesh.md) and its live view (proxy stats read back).

Four Services on loopback: `web` (HTTP/1.1) calls `api` (h2c: HTTP/2 between the sidecars and
to the app), which an HTTPRoute splits between `api-v1` and `api-v2` (the canary), and
`inventory` (gRPC).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MESH = """\
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec: {{ports: [{{name: http, port: 8000, targetPort: 9000, appProtocol: http}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api}}
spec: {{ports: [{{name: http, port: 8080, appProtocol: kubernetes.io/h2c}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api-v1}}
spec: {{ports: [{{name: http, port: 8080, targetPort: 9081, appProtocol: kubernetes.io/h2c}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: api-v2}}
spec: {{ports: [{{name: http, port: 8080, targetPort: 9082, appProtocol: kubernetes.io/h2c}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: inventory}}
spec: {{ports: [{{name: grpc, port: 9090, targetPort: 9091, appProtocol: grpc}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: api-canary}}
spec:
  parentRefs: [{{group: "", kind: Service, name: api, port: 8080}}]
  rules:
  - backendRefs:
    - {{name: api-v1, port: 8080, weight: {v1}}}
    - {{name: api-v2, port: 8080, weight: {v2}}}
"""


@dataclass(frozen=True)
class Member:
    """One Service's sidecar and app addresses (each its own loopback /24)."""

    service: str
    index: int
    app_port: int
    app: tuple[str, ...]  # python -m examples.demo.apps ...

    @property
    def instance_ip(self) -> str:
        return f"127.77.{self.index}.1"

    @property
    def outbound_ip(self) -> str:
        return f"127.77.{self.index}.2"

    @property
    def app_ip(self) -> str:
        return f"127.77.{self.index}.3"

    @property
    def admin(self) -> str:
        return f"{self.outbound_ip}:15000"


def members() -> list[Member]:
    return [
        Member("web", 1, 9000, ("web", "127.77.1.3", "9000")),
        Member("api-v1", 2, 9081, ("api", "api-v1", "127.77.2.3", "9081")),
        Member("api-v2", 3, 9082, ("api", "api-v2", "127.77.3.3", "9082")),
        Member("inventory", 4, 9091, ("inventory", "127.77.4.3", "9091")),
    ]


_SERIES = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


@dataclass
class Inbound:
    """A sidecar's inbound HTTP numbers, from its /stats/prometheus."""

    total: int = 0
    errors: int = 0  # 5xx
    buckets: tuple[tuple[float, int], ...] = ()  # downstream_rq_time (ms), cumulative


def read_inbound(text: str) -> Inbound:
    """Sum over the sidecar's `inbound|PORT` connection managers (the mesh's stat_prefix)."""
    found = Inbound()
    buckets: dict[float, int] = {}
    for line in text.splitlines():
        match = _SERIES.match(line)
        if not match or 'envoy_http_conn_manager_prefix="inbound' not in match.group(2):
            continue
        name, labels, value = match.groups()
        if name == "envoy_http_downstream_rq_total":
            found.total += int(value)
        elif name == "envoy_http_downstream_rq_xx" and 'response_code_class="5"' in labels:
            found.errors += int(value)
        elif name == "envoy_http_downstream_rq_time_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
                buckets[bound] = buckets.get(bound, 0) + int(value)
    found.buckets = tuple(sorted(buckets.items()))
    return found


def quantile(q: float, before: tuple[tuple[float, int], ...],
             after: tuple[tuple[float, int], ...]) -> float | None:
    """Prometheus' histogram_quantile over the samples between two reads (linear within a
    bucket), in ms; None without samples."""
    old = dict(before)
    deltas = [(bound, count - old.get(bound, 0)) for bound, count in after]
    if not deltas or deltas[-1][1] <= 0:
        return None
    rank = q * deltas[-1][1]
    lower, below = 0.0, 0
    for bound, count in deltas:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1)
        lower, below = bound, count
    return lower
