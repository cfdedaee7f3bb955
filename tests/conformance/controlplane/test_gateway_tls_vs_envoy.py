"""Envoy 1.40 validates (`envoy --mode validate`) what the compiler makes of two TLS cases of
the Gateway API conformance suite, on the suite's own manifests:

- the inbound listener of a backend behind a BackendTLSPolicy (tls-backend, PERMISSIVE): the
  chain passing the policy's TLS through by SNI beside the mesh's mTLS and plaintext chains;
- the HTTPS listeners of same-namespace-with-https-listener with the misdirected-requests
  routes: each filter chain's route table (inlined for validation, RDS in operation) with its
  421 direct_response virtual hosts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.node import MeshNode
from controlplane.mesh.identity import MeshIdentity
from controlplane.resources import CLUSTER, LISTENER, ROUTE
from tests.conformance.controlplane.test_mesh_security_vs_envoy import _unpack
from tests.support.envoy import envoy_binary
from tests.unit.controlplane.mesh.helpers import gateway
from tests.unit.controlplane.mesh.test_backend_tls import CA_CONFIG_MAP, FRONTEND, NS, suite_mesh

pytestmark = pytest.mark.conformance

HCM = "envoy.filters.network.http_connection_manager"


def _plain(resources: dict[str, dict[str, Any]], type_url: str) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(_unpack(item), preserving_proto_field_name=True)
            for item in resources[type_url].values()]


def _validate(resources: dict[str, dict[str, Any]], node: str, tmp_path: Path) -> None:
    """Listeners and clusters as static resources, each RDS name replaced by its table."""
    tables = {table["name"]: table for table in _plain(resources, ROUTE.type_url)}
    listeners = _plain(resources, LISTENER.type_url)
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for item in chain["filters"]:
                config = item["typed_config"]
                if item["name"] == HCM and "rds" in config:
                    config["route_config"] = tables[config.pop("rds")["route_config_name"]]
    xds = {"name": "xds", "type": "STATIC", "connect_timeout": "1s",
           "typed_extension_protocol_options": {
               "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                   "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                            "HttpProtocolOptions",
                   "explicit_http_config": {"http2_protocol_options": {}}}},
           "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{
               "endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                            "port_value": 18000}}}}]}]}}
    bootstrap = {"node": {"id": node, "cluster": node},
                 "dynamic_resources": {"ads_config": {
                     "api_type": "GRPC", "transport_api_version": "V3",
                     "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]}},
                 "static_resources": {"listeners": listeners,
                                      "clusters": [xds, *_plain(resources, CLUSTER.type_url)]}}
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    result = subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(path),
                             "--disable-hot-restart", "--log-level", "critical"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_envoy_validates_the_policy_passthrough_chain(tmp_path: Path) -> None:
    node = MeshNode("tls-backend-1", "Workload", "tls-backend", NS, "127.0.0.4", "127.0.0.5",
                    "127.0.0.6", labels=(("app", "tls-backend"),))
    resources = MeshCompiler(suite_mesh("backendtlspolicy.yaml"),
                             identity=MeshIdentity()).compile_node(node).resources
    [listener] = [item for item in _plain(resources, LISTENER.type_url)
                  if item["name"] == "inbound|8443"]
    assert any(chain.get("filter_chain_match", {}).get("server_names")
               for chain in listener["filter_chains"])
    _validate(resources, "tls-backend-1", tmp_path)


def test_envoy_validates_the_misdirected_request_hosts(tmp_path: Path) -> None:
    mesh = suite_mesh("httproute-https-listener-detect-misdirected-requests.yaml",
                      extra=CA_CONFIG_MAP + FRONTEND)
    resources = MeshCompiler(mesh).compile_node(
        gateway("same-namespace-with-https-listener", NS)).resources
    statuses = [route.get("direct_response", {}).get("status")
                for table in _plain(resources, ROUTE.type_url)
                for vhost in table.get("virtual_hosts", ()) for route in vhost["routes"]]
    assert 421 in statuses
    _validate(resources, "gateway-1", tmp_path)
