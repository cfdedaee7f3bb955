"""Sidecars compiled: inbound listeners with the Service's caller-facing policies, outbound
listeners per port, GAMMA consumer routes, clusters from BackendTrafficPolicy, node identity,
and every resource accepted by the Pointsman sidecar's own translators."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from controlplane.mesh.compile.compiler import MeshCompiler
from controlplane.mesh.compile.memo import Endpoints
from controlplane.mesh.compile.node import NodeError, node_identity
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.unit.controlplane.mesh.helpers import (
    CLASSES,
    SERVICES,
    as_dict,
    ask,
    clusters_of,
    compiled,
    mesh_of,
    route,
    sidecar,
)

POLICIES = SERVICES + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: api}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  loadBalancer: {type: ConsistentHash, consistentHash: {type: Header, header: {name: x-user}}}
  healthCheck:
    active: {type: HTTP, http: {path: /healthz, expectedStatuses: [200, 204]}, interval: 5s,
             timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 3}
    passive: {consecutive5XxErrors: 3, baseEjectionTime: 10s, maxEjectionPercent: 50}
    panicThreshold: 0
  circuitBreaker: {maxConnections: 10, maxPendingRequests: 5, maxParallelRequests: 20,
                   maxParallelRetries: 2}
  retry: {numRetries: 4, retryOn: {triggers: [5xx, reset]}, perRetry: {timeout: 1s}}
  timeout: {tcp: {connectTimeout: 2s}, http: {requestTimeout: 30s, connectionIdleTimeout: 60s}}
  rateLimit: {local: {rules: [{limit: {requests: 5, unit: Minute}}]}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: api}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  authorization:
    defaultAction: Allow
    rules:
    - {name: blocked, action: Deny, principal: {clientCIDRs: [10.9.0.0/16]}}
    - {name: office, action: Allow, principal: {clientCIDRs: [10.9.1.0/24]}}
"""


def test_service_policies_shape_its_cluster_for_every_caller() -> None:
    cluster = as_dict(compiled(mesh_of(POLICIES), sidecar("web")), CLUSTER.type_url,
                      "outbound|8080||api.default")
    assert cluster["lb_policy"] == "MAGLEV"
    assert cluster["maglev_lb_config"] == {"table_size": "65537"}
    assert cluster["connect_timeout"] == "2s"
    [check] = cluster["health_checks"]
    assert check["http_health_check"] == {"path": "/healthz", "expected_statuses": [
        {"start": "200", "end": "201"}, {"start": "204", "end": "205"}]}
    assert (check["interval"], check["unhealthy_threshold"], check["healthy_threshold"]) == \
        ("5s", 2, 3)
    assert cluster["outlier_detection"]["consecutive_5xx"] == 3
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {}}  # value 0: no panic
    assert cluster["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 10, "max_pending_requests": 5, "max_requests": 20,
        "max_retries": 2}
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["common_http_protocol_options"] == {"idle_timeout": "60s"}


def test_service_policies_apply_to_the_default_route() -> None:
    answer = ask(mesh_of(POLICIES), "web", "http://api:8080/x")
    assert "timeout: 30s" in answer.policies
    assert "retry: 4 on 5xx,reset, 1s per try" in answer.policies
    assert "consistent hash on header x-user" in answer.policies


def test_inbound_listener_enforces_the_policies_for_callers() -> None:
    resources = compiled(mesh_of(POLICIES), sidecar("api"))
    listener = as_dict(resources, LISTENER.type_url, "inbound|8080")
    assert listener["address"]["socket_address"] == {"address": "10.0.0.1",
                                                     "port_value": 8080}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [item["name"] for item in hcm["http_filters"]]
    assert names == ["envoy.filters.http.rbac", "envoy.filters.http.local_ratelimit",
                     "envoy.filters.http.router"]
    rules = hcm["http_filters"][0]["typed_config"]["rules"]["policies"]
    deny = {"remote_ip": {"address_prefix": "10.9.0.0", "prefix_len": 16}}
    assert rules["1-office"]["principals"] == [{"and_ids": {"ids": [
        {"remote_ip": {"address_prefix": "10.9.1.0", "prefix_len": 24}}, {"not_id": deny}]}}]
    assert rules["default-allow"]["principals"] == [{"not_id": deny}]
    bucket = hcm["http_filters"][1]["typed_config"]["token_bucket"]
    assert bucket == {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "60s"}
    # its local reply to the application's connection failure or reset says so, for a
    # caller's retry policy (hcm.UPSTREAM_RESET_HEADER)
    assert hcm["local_reply_config"] == {"mappers": [{
        "filter": {"response_flag_filter": {"flags": ["UF", "UC", "UR"]}},
        "headers_to_add": [{"header": {"key": "x-pointsman-upstream-reset", "value": "true"},
                            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]}]}
    cluster = as_dict(resources, CLUSTER.type_url, "inbound|8080")
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}


def test_consumer_routes_replace_producer_routes_for_their_namespace_only() -> None:
    """Gateway API's conformance test MeshConsumerRoute, translated."""
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: client, namespace: consumer}
spec: {ports: [{name: http, port: 80}]}
""" + route("""
rules:
- filters: [{type: ResponseHeaderModifier,
             responseHeaderModifier: {set: [{name: X-Header-Set, value: set}]}}]
  backendRefs: [{name: api, namespace: default, port: 8080}]
""", name="consumer-route", namespace="consumer",
          parent='{group: "", kind: Service, name: api, namespace: default}')
    mesh = mesh_of(text)
    consumer = compiled(mesh, sidecar("client", "consumer"))
    producer = compiled(mesh, sidecar("web"))

    def api_routes(resources):  # type: ignore[no-untyped-def]
        table = as_dict(resources, ROUTE.type_url, "outbound|8080")
        return next(item for item in table["virtual_hosts"]
                if "api.default" in item["domains"])
    assert "response_headers_to_add" in api_routes(consumer)["routes"][0]
    assert "response_headers_to_add" not in api_routes(producer)["routes"][0]
    assert "api" not in api_routes(consumer)["domains"]  # short names: own namespace only
    assert "api" in api_routes(producer)["domains"]


def test_endpoints_are_registered_sidecars_and_endpointslices() -> None:
    text = SERVICES + """---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-abc, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 9090}]
endpoints:
- addresses: [10.2.0.1]
- addresses: [10.2.0.2]
  conditions: {ready: false}
"""
    endpoints = Endpoints()
    endpoints.by_service = {("default", "api"): ("10.0.0.7",)}
    assignment = as_dict(compiled(mesh_of(text), sidecar("web"), endpoints),
                         ENDPOINT.type_url, "outbound|8080||api.default")
    found = [(item["endpoint"]["address"]["socket_address"]["address"],
              item["endpoint"]["address"]["socket_address"]["port_value"],
              item.get("health_status", "")) for item in assignment["endpoints"][0][
        "lb_endpoints"]]
    assert found == [("10.0.0.7", 8080, ""), ("10.2.0.1", 9090, ""),
                     ("10.2.0.2", 9090, "UNHEALTHY")]


def test_tcp_ports_and_their_conflicts() -> None:
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: pg, port: 5432, appProtocol: postgresql}]}
---
apiVersion: v1
kind: Service
metadata: {name: db2}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}]}
"""
    resources = compiled(mesh_of(text), sidecar("web"))
    listener = as_dict(resources, LISTENER.type_url, "outbound|5432")
    proxy = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert proxy["cluster"] == "outbound|5432||db.default"
    assert any("db2 shares TCP port 5432" in note for note in resources.notes)


def node(cluster: str, **metadata: str) -> base_pb2.Node:
    message = base_pb2.Node(id="n1", cluster=cluster)
    json_format.ParseDict(metadata, message.metadata)
    return message


def test_node_identity() -> None:
    mesh = mesh_of(SERVICES)
    found = node_identity(node("api", instance_ip="10.1.1.1"), mesh)
    assert found is not None and (found.kind, found.namespace, found.instance_ip) == \
        ("Service", "default", "10.1.1.1")
    assert node_identity(node("stranger"), mesh) is None
    with pytest.raises(NodeError, match="not an IP address"):
        node_identity(node("api", instance_ip="nope"), mesh)
    with pytest.raises(NodeError, match="instance_ip"):
        MeshCompiler(mesh).compile_node(node_identity(node("api"), mesh))  # type: ignore


FULL = POLICIES + route("""
rules:
- matches: [{path: {value: /v2}, headers: [{name: x, value: "1"}], method: GET,
             queryParams: [{name: q, value: a}]}]
  filters:
  - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: a, value: b}]}}
  - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
  backendRefs: [{name: api-v2, port: 8080, weight: 9}, {name: api-v1, port: 8080}]
  timeouts: {request: 5s, backendRequest: 1s}
  retry: {codes: [503]}
  sessionPersistence: {sessionName: s, absoluteTimeout: 1h,
                       cookieConfig: {lifetimeType: Permanent}}
- filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
- name: extras
  matches: [{path: {value: /extras}}]
  filters:
  - {type: RequestMirror, requestMirror: {backendRef: {name: api-v1, port: 8080}, percent: 5}}
  - {type: CORS, cors: {allowOrigins: ["https://*.example.com"], allowMethods: [GET]}}
  backendRefs: [{name: api-v1, port: 8080}]
""") + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: faults}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r,
                sectionName: extras}, {group: "", kind: Service, name: api-v2}]
  faultInjection: {delay: {fixedDelay: 10ms, percentage: 1}, abort: {httpStatus: 503,
                                                                     percentage: 0.5}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: cors}
spec:
  targetRefs: [{group: "", kind: Service, name: api-v1}]
  cors: {allowOrigins: ["*"], allowMethods: [GET, POST], maxAge: 1m}
---
apiVersion: v1
kind: Service
metadata: {name: grpc}
spec: {ports: [{name: grpc, port: 9000, appProtocol: grpc}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  parentRefs: [{group: "", kind: Service, name: grpc}]
  rules:
  - matches: [{method: {service: pkg.Svc, method: Get}}, {method: {service: pkg.Other}}]
    backendRefs: [{name: grpc, port: 9000}]
"""


@pytest.mark.parametrize("caller", ["web", "api", "api-v1", "api-v2", "grpc"])
def test_every_resource_is_accepted_by_the_pointsman_sidecar(caller: str) -> None:
    from proxy.bootstrap import ensure_network_filters
    from proxy.model.cluster import translate_cluster
    from proxy.model.endpoint import translate_cluster_load_assignment
    from proxy.model.listener import translate_listener
    from proxy.model.route import translate_route_configuration

    ensure_network_filters()
    translators = {LISTENER.type_url: translate_listener,
                   ROUTE.type_url: translate_route_configuration,
                   CLUSTER.type_url: translate_cluster,
                   ENDPOINT.type_url: translate_cluster_load_assignment}
    resources = compiled(mesh_of(FULL), sidecar(caller))
    count = 0
    for type_url, items in resources.resources.items():
        for resource in items.values():
            message = CLASSES[type_url]()
            resource.packed.Unpack(message)
            translators[type_url](message)  # raises ConfigError naming the field
            count += 1
    assert count > 10
    if caller == "grpc":
        assert clusters_of(ask(mesh_of(FULL), "web", "http://grpc:9000/pkg.Svc/Get")) == \
            {"default/grpc": 100.0}


def test_a_tcproute_on_a_service_splits_its_callers_connections() -> None:
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}]}
---
apiVersion: v1
kind: Service
metadata: {name: db-new}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: migrate}
spec:
  parentRefs: [{group: "", kind: Service, name: db, port: 5432}]
  rules: [{backendRefs: [{name: db, port: 5432, weight: 3}, {name: db-new, port: 5432}]}]
"""
    answer = ask(mesh_of(text), "web", "tcp://db:5432")
    assert clusters_of(answer) == {"default/db": 75.0, "default/db-new": 25.0}


def test_an_outbound_listener_would_take_the_applications_port() -> None:
    mesh = mesh_of(SERVICES)  # web's targetPort 80 is also a Service port
    node = sidecar("web")
    clash = type(node)(node.id, node.kind, node.name, node.namespace, node.instance_ip,
                       "127.0.0.5", "127.0.0.5")
    with pytest.raises(NodeError, match=r"port\(s\) \[80\]"):
        MeshCompiler(mesh).compile_node(clash)


@pytest.mark.parametrize(("hashing", "expected"), [
    ("{type: SourceIP}", [{"connection_properties": {"source_ip": True}}]),
    ("{type: Headers, headers: [{name: x-a}, {name: x-b}]}",
     [{"header": {"header_name": "x-a"}}, {"header": {"header_name": "x-b"}}]),
    ("{type: Cookie, cookie: {name: c, ttl: 1h}}", [{"cookie": {"name": "c", "ttl": "3600s"}}]),
    ("{type: QueryParams, queryParams: [{name: user}]}", [{"query_parameter": {"name": "user"}}]),
])
def test_consistent_hash_kinds(hashing: str, expected: list[dict[str, object]]) -> None:
    text = SERVICES + f"""---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: h}}
spec:
  targetRefs: [{{group: "", kind: Service, name: api}}]
  loadBalancer: {{type: ConsistentHash, consistentHash: {hashing}}}
"""
    table = as_dict(compiled(mesh_of(text), sidecar("web")), ROUTE.type_url, "outbound|8080")
    vhost = next(item for item in table["virtual_hosts"] if item["name"] == "api.default:8080")
    assert vhost["routes"][0]["route"]["hash_policy"] == expected


@pytest.mark.parametrize(("check", "expected"), [
    ("{type: TCP, tcp: {send: {type: Text, text: ping}, receive: {type: Text, text: pong}}}",
     {"tcp_health_check": {"send": {"text": "70696e67"}, "receive": [{"text": "706f6e67"}]}}),
    ("{type: GRPC, grpc: {service: health.v1}}",
     {"grpc_health_check": {"service_name": "health.v1"}}),
    ("{type: HTTP, http: {path: /h, method: HEAD, hostname: x.example}}",
     {"http_health_check": {"path": "/h", "method": "HEAD", "host": "x.example",
                            "expected_statuses": [{"start": "200", "end": "201"}]}}),
])
def test_active_health_check_kinds(check: str, expected: dict[str, object]) -> None:
    text = SERVICES + f"""---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: h}}
spec:
  targetRefs: [{{group: "", kind: Service, name: api}}]
  healthCheck: {{active: {check}}}
"""
    cluster = as_dict(compiled(mesh_of(text), sidecar("web")), CLUSTER.type_url,
                      "outbound|8080||api.default")
    [found] = cluster["health_checks"]
    assert {key: value for key, value in found.items() if key.endswith("_check")} == expected
    assert (found["interval"], found["timeout"], found["unhealthy_threshold"],
            found["healthy_threshold"]) == ("3s", "1s", 3, 1)  # Envoy Gateway's defaults
