"""The demo's mesh objects (docs/mesh.md) and its live view (proxy stats read back).

Services on loopback: `web` (HTTP/1.1) calls `api` (h2c: HTTP/2 between the sidecars and
to the app), which an HTTPRoute splits between `api-v1` and `api-v2` (the canary), and
`inventory` (gRPC). The edge Gateway `edge` terminates TLS for `shop.example` (to `web`) and
passes TLS for `vault.example` through, by SNI, to `vault`, which terminates it itself.
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
apiVersion: v1
kind: Service
metadata: {{name: vault}}
spec: {{ports: [{{name: tls, port: 9443, targetPort: 9444, appProtocol: tls}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: shop-cert}}
type: kubernetes.io/tls
stringData: {{tls.crt: {cert}, tls.key: {key}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: pointsman
  addresses: [{{type: IPAddress, value: {edge_ip}}}]
  listeners:
  - name: https
    port: 8443
    protocol: HTTPS
    hostname: shop.example
    tls: {{mode: Terminate, certificateRefs: [{{name: shop-cert}}]}}
  - name: tls
    port: 9443
    protocol: TLS
    hostname: vault.example
    tls: {{mode: Passthrough}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop}}
spec:
  parentRefs: [{{name: edge, sectionName: https}}]
  rules: [{{backendRefs: [{{name: web, port: 8000}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {{name: vault}}
spec:
  parentRefs: [{{name: edge, sectionName: tls}}]
  hostnames: [vault.example]
  rules: [{{backendRefs: [{{name: vault, port: 9443}}]}}]
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
        Member("vault", 5, 9444, ("vault", "127.77.5.3", "9444", "{cert}", "{key}")),
    ]


EDGE_IP, EDGE_ADMIN = "127.77.9.1", "127.77.9.2:15000"


_SERIES = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


@dataclass
class Inbound:
    """A sidecar's inbound HTTP numbers, from its /stats/prometheus."""

    total: int = 0
    errors: int = 0  # 5xx
    buckets: tuple[tuple[float, int], ...] = ()  # downstream_rq_time (ms), cumulative


def read_inbound(text: str, prefix: str = "inbound") -> Inbound:
    """Sum over the sidecar's `inbound|PORT` connection managers (the mesh's stat_prefix; a
    Gateway's are `gateway_PORT...`), or its tcp_proxy connections for a TLS Service."""
    found = Inbound()
    buckets: dict[float, int] = {}
    for line in text.splitlines():
        match = _SERIES.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        if name == "envoy_tcp_downstream_cx_total" and f'tcp_prefix="{prefix}' in labels:
            found.total += int(value)  # a TCP (TLS) port: connections, not requests
        if f'envoy_http_conn_manager_prefix="{prefix}' not in labels:
            continue
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
