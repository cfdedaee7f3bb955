"""The mesh a control-plane benchmark serves, as resource files for `--resources` (a script
helper, not a test).

A mesh of S services in which every sidecar gets what a sidecar of such a mesh gets: S+1
listeners (one outbound HTTP listener per service, on the service's virtual IP, with RDS; one
inbound listener), one RouteConfiguration `outbound` with a virtual host per service, S+1
clusters (an EDS cluster per service, a STATIC `inbound` cluster) and S ClusterLoadAssignments
with three endpoints each. About 1.2 MB of resources at S = 1,000.

Three layouts (docs/controlplane.md, "Node scoping"):
- `shared`: one configuration for every sidecar (files directly in PATH);
- `groups`: per workload: the outbound side is shared, and each service's folder `PATH/svc-N/`
  holds that workload's own inbound listener and cluster (a node group, chosen by node cluster
  `svc-N`). Every sidecar then has a view of its own.
- `mesh`: mesh objects for `--mesh` (docs/mesh.md): per service a Service (HTTP, port 80) and
  an EndpointSlice of three addresses, in namespace `mesh`; each sidecar is a member of its
  service (node cluster `svc-N`, its own instance_ip), compiled by the control plane: its
  inbound listener and cluster to its application, one outbound listener (port 80), one route
  table of S virtual hosts, S clusters and S endpoint sets. Sidecars register as endpoints of
  their service when their listeners are ACKed, as the mesh does.

Each service is one file (`svc-N.json`: listener, cluster, endpoints), so an endpoint change
rewrites one small file, as a per-object source (the mesh API) would change one object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
LOG_FORMAT = ("[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
              "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
              "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" "
              "\"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER%\n")
ADS = {"ads": {}, "resource_api_version": "V3"}
LAYOUTS = ("shared", "groups", "mesh")


def service(index: int) -> str:
    return f"svc-{index:04d}"


def _hcm(stat_prefix: str, route: dict[str, Any]) -> dict[str, Any]:
    access_log = {"name": "envoy.access_loggers.file",
                  "typed_config": {"@type": FILE_LOG, "path": "/dev/stdout", "log_format": {
                      "text_format_source": {"inline_string": LOG_FORMAT}}}}
    config = {"@type": HCM, "stat_prefix": stat_prefix, **route,
              "use_remote_address": False, "normalize_path": True, "merge_slashes": True,
              "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
              "stream_idle_timeout": "300s", "request_timeout": "0s",
              "common_http_protocol_options": {"idle_timeout": "3600s",
                                               "max_headers_count": 100},
              "http2_protocol_options": {"max_concurrent_streams": 1073741824},
              "upgrade_configs": [{"upgrade_type": "websocket"}],
              "access_log": [access_log],
              "http_filters": [{"name": "envoy.filters.http.router",
                                "typed_config": {"@type": ROUTER}}]}
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def outbound_listener(index: int) -> dict[str, Any]:
    """Listens on the service's virtual IP, port 80 (240.0.0.0/4 is reserved: never routed)."""
    address = f"240.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}"
    return {"@type": LISTENER, "name": f"outbound-{service(index)}",
            "address": {"socket_address": {"address": address, "port_value": 80}},
            "traffic_direction": "OUTBOUND", "per_connection_buffer_limit_bytes": 32768,
            "listener_filters_timeout": "0s", "continue_on_listener_filters_timeout": True,
            "filter_chains": [{"filters": [_hcm(f"outbound_{index}", {
                "rds": {"route_config_name": "outbound", "config_source": ADS}})]}]}


def cluster(index: int) -> dict[str, Any]:
    return {"@type": CLUSTER, "name": service(index), "type": "EDS", "connect_timeout": "1s",
            "lb_policy": "LEAST_REQUEST", "eds_cluster_config": {"eds_config": ADS},
            "circuit_breakers": {"thresholds": [{"max_connections": 4294967295,
                                                 "max_pending_requests": 4294967295,
                                                 "max_requests": 4294967295,
                                                 "max_retries": 4294967295}]},
            "outlier_detection": {"consecutive_5xx": 5, "interval": "10s",
                                  "base_ejection_time": "30s", "max_ejection_percent": 10},
            "common_lb_config": {"healthy_panic_threshold": {"value": 50.0}},
            "upstream_connection_options": {"tcp_keepalive": {"keepalive_time": 300}}}


def endpoints(index: int, generation: int = 0) -> dict[str, Any]:
    """Three endpoints; `generation` moves the first one (an endpoint change)."""
    hosts = [(f"10.{index // 256 % 256}.{index % 256}.{host}", 8080 + (generation if host == 1
                                                                     else 0))
             for host in (1, 2, 3)]
    return {"@type": ENDPOINTS, "cluster_name": service(index), "endpoints": [{
        "locality": {"zone": "zone-a"},
        "lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": address, "port_value": port}}}, "health_status": "HEALTHY",
            "load_balancing_weight": 1,
            "metadata": {"filter_metadata": {"istio": {"workload": f"{service(index)}-{host}"}}}}
            for (address, port), host in zip(hosts, (1, 2, 3), strict=True)]}]}


def route_configuration(services: int) -> dict[str, Any]:
    hosts = [{"name": service(index),
              "domains": [service(index), f"{service(index)}.mesh.svc.cluster.local",
                          f"{service(index)}:80"],
              "routes": [{"match": {"prefix": "/"},
                          "route": {"cluster": service(index), "timeout": "15s",
                                    "retry_policy": {"retry_on": "connect-failure,reset",
                                                     "num_retries": 2}}}]}
             for index in range(services)]
    return {"@type": ROUTE, "name": "outbound", "virtual_hosts": hosts}


def inbound(port: int) -> list[dict[str, Any]]:
    """A workload's inbound side: its listener and the cluster of the local application."""
    local = {"@type": CLUSTER, "name": "inbound", "type": "STATIC", "connect_timeout": "1s",
             "load_assignment": {"cluster_name": "inbound", "endpoints": [{"lb_endpoints": [
                 {"endpoint": {"address": {"socket_address": {
                     "address": "127.0.0.1", "port_value": port}}}}]}]}}
    routes = {"route_config": {"name": "inbound", "virtual_hosts": [{
        "name": "inbound", "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "inbound"}}]}]}}
    listener = {"@type": LISTENER, "name": "inbound",
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15006}},
                "traffic_direction": "INBOUND",
                "filter_chains": [{"filters": [_hcm("inbound", routes)]}]}
    return [listener, local]


@dataclass(frozen=True)
class Mesh:
    """S services in one of LAYOUTS, written under `root`."""

    root: Path
    services: int
    layout: str = "shared"

    def write(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.layout == "mesh":
            for index in range(self.services):
                self.write_service(index)
            return
        for index in range(self.services):
            self.write_service(index)
        _write(self.root / "routes.json", [route_configuration(self.services)])
        if self.layout == "shared":
            _write(self.root / "inbound.json", inbound(8080))
        else:
            for index in range(self.services):
                folder = self.root / service(index)
                folder.mkdir(exist_ok=True)
                _write(folder / "inbound.json", inbound(8080 + index % 1000))

    def write_service(self, index: int, generation: int = 0) -> None:
        if self.layout == "mesh":
            path = self.root / f"{service(index)}.yaml"
            partial = path.with_name(f".{path.name}.partial")
            partial.write_text(mesh_service(index, generation))
            partial.replace(path)
            return
        _write(self.root / f"{service(index)}.json",
               [outbound_listener(index), cluster(index), endpoints(index, generation)])

    def node_cluster(self, sidecar: int) -> str:
        """The node cluster a sidecar presents: its service's group in the `groups` layout,
        its Service in the `mesh` one."""
        return service(sidecar % self.services) if self.layout != "shared" else "mesh"

    def node_metadata(self, sidecar: int) -> dict[str, str]:
        """A mesh member's node metadata (docs/mesh.md): its own instance_ip."""
        if self.layout != "mesh":
            return {}
        return {"namespace": "mesh", "outbound_ip": "127.0.0.2",
                "instance_ip": f"10.{200 + sidecar // 65536}.{sidecar // 256 % 256}."
                               f"{sidecar % 256}"}

    def expected(self) -> dict[str, int]:
        """How many resources of each type a converged sidecar holds."""
        if self.layout == "mesh":
            return compiled_counts(self.root)
        return {CLUSTER: self.services + 1, ENDPOINTS: self.services,
                LISTENER: self.services + 1, ROUTE: 1}


def mesh_service(index: int, generation: int = 0) -> str:
    """A Service and its EndpointSlice; `generation` moves the first address."""
    name = service(index)
    addresses = [f"10.{index // 256 % 256}.{index % 256}.{1 + (generation if host == 1 else 0)}"
                 if host == 1 else f"10.{index // 256 % 256}.{index % 256}.{100 + host}"
                 for host in (1, 2, 3)]
    endpoints_yaml = "".join(f"- addresses: [{address}]\n" for address in addresses)
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: mesh}}
spec: {{ports: [{{name: http, port: 80, targetPort: 8080, appProtocol: http}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: mesh, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: 8080}}]
endpoints:
{endpoints_yaml}"""


def compiled_counts(root: Path) -> dict[str, int]:
    """What the control plane compiles for one sidecar of the `mesh` layout, per type."""
    from controlplane.mesh.compile.compiler import MeshCompiler
    from controlplane.mesh.compile.node import MeshNode
    from controlplane.sources.mesh import MeshCache, MeshSource

    source = MeshSource(root, MeshCache())
    if not source.poll():
        raise RuntimeError(f"the benchmark's mesh is refused: {source.last_error}")
    compiler = MeshCompiler(source.cache.mesh)
    resources = compiler.compile_node(MeshNode("x", "Service", service(0), "mesh", "10.200.0.0",
                                               outbound_ip="127.0.0.2")).resources
    return {type_url: len(items) for type_url, items in resources.items() if items}


def _write(path: Path, resources: list[dict[str, Any]]) -> None:
    """Atomically (write + rename), as docs/controlplane.md asks."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({"resources": resources}))
    partial.replace(path)
