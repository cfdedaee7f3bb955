"""Small builders for mesh tests: YAML in, compiled resources and explanations out."""

from __future__ import annotations

import textwrap
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from controlplane.mesh import load_objects, resolve
from controlplane.mesh.compile.compiler import MeshCompiler, NodeResources
from controlplane.mesh.compile.memo import Endpoints
from controlplane.mesh.compile.node import MeshNode
from controlplane.mesh.explain import Explanation, explain
from controlplane.mesh.resolve import Mesh
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE

CLASSES = {LISTENER.type_url: listener_pb2.Listener, ROUTE.type_url: route_pb2.RouteConfiguration,
           CLUSTER.type_url: cluster_pb2.Cluster,
           ENDPOINT.type_url: endpoint_pb2.ClusterLoadAssignment}


def mesh_of(text: str) -> Mesh:
    return resolve(load_objects(textwrap.dedent(text), "mesh.yaml"))


def sidecar(name: str, namespace: str = "default") -> MeshNode:
    return MeshNode(f"{name}-1", "Service", name, namespace, "10.0.0.1", "127.0.0.1",
                    "127.0.0.2")


def gateway(name: str, namespace: str = "default") -> MeshNode:
    return MeshNode(f"{name}-1", "Gateway", name, namespace)


def compiled(mesh: Mesh, node: MeshNode, endpoints: Endpoints | None = None) -> NodeResources:
    return MeshCompiler(mesh, endpoints).compile_node(node)


def as_dict(resources: NodeResources, type_url: str, name: str) -> dict[str, Any]:
    message = CLASSES[type_url]()
    resources.resources[type_url][name].packed.Unpack(message)
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


def ask(mesh: Mesh, caller: str, url: str, *headers: tuple[str, str],
        method: str = "GET") -> Explanation:
    return explain(mesh, caller, method, url, list(headers))


def clusters_of(answer: Explanation) -> dict[str, float]:
    """service -> share of requests, from an explanation."""
    return {backend.service or backend.cluster: backend.share for backend in answer.backends}


SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-v1}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-v2}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
"""


def route(body: str, name: str = "r", namespace: str = "default",
          parent: str = '{group: "", kind: Service, name: api, port: 8080}',
          created: str = "") -> str:
    stamp = f", creationTimestamp: '{created}'" if created else ""
    return f"""---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {namespace}{stamp}}}
spec:
  parentRefs: [{parent}]
{textwrap.indent(textwrap.dedent(body).rstrip(), '  ')}
"""
