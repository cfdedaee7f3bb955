"""Gateways compiled: listener ports, hostnames (intersection, Listener Isolation, route
precedence by hostname), HTTPS termination from Secrets, TLS passthrough, TCP."""

from __future__ import annotations

import base64
import datetime

from controlplane.ca import CertificateAuthority
from controlplane.resources import LISTENER, ROUTE
from tests.unit.controlplane.mesh.helpers import (
    SERVICES,
    as_dict,
    ask,
    clusters_of,
    compiled,
    gateway,
    mesh_of,
    route,
)

# A real certificate and key: Secrets are checked (a malformed one is reported, not served).
_AUTHORITY = CertificateAuthority.create_root(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC))
PEM = _AUTHORITY.certificate_pem().decode()
KEY = _AUTHORITY.key_pem().decode()
EDGE = SERVICES + f"""---
apiVersion: v1
kind: Secret
metadata: {{name: cert}}
type: kubernetes.io/tls
data: {{tls.crt: {base64.b64encode(PEM.encode()).decode()},
        tls.key: {base64.b64encode(KEY.encode()).decode()}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: edge}}
spec:
  gatewayClassName: pointsman
  addresses: [{{type: IPAddress, value: 10.1.2.3}}]
  listeners:
  - {{name: any, port: 80, protocol: HTTP}}
  - {{name: wild, port: 80, protocol: HTTP, hostname: "*.example.com"}}
  - {{name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}}
  - name: https
    port: 443
    protocol: HTTPS
    hostname: secure.example.com
    tls: {{certificateRefs: [{{name: cert}}]}}
  - name: pass
    port: 443
    protocol: TLS
    hostname: "*.tls.example.com"
    tls: {{mode: Passthrough}}
    allowedRoutes: {{kinds: [{{kind: TLSRoute}}]}}
"""


def edge(*routes: str) -> str:
    return EDGE + "".join(routes)


def to(service: str, hostnames: str = "", parent: str = "{name: edge}", name: str = "r",
       rules: str = "") -> str:
    body = (f"hostnames: {hostnames}\n" if hostnames else "") + \
        (rules or f"rules: [{{backendRefs: [{{name: {service}, port: 8080}}]}}]")
    return route(body, name=name, parent=parent)


def test_listener_isolation_and_hostname_precedence() -> None:
    mesh = mesh_of(edge(
        to("api-v1", name="general", parent="{name: edge, sectionName: wild}"),
        to("api-v2", name="exact", hostnames="[bar.example.com]",
           parent="{name: edge, sectionName: wild}",
           rules="rules: [{matches: [{path: {type: PathPrefix, value: /only}}], "
                 "backendRefs: [{name: api-v2, port: 8080}]}]"),
        to("api", name="foo", parent="{name: edge, sectionName: foo}"),
        to("api-v1", name="fallback", parent="{name: edge, sectionName: any}")))
    answers = {url: clusters_of(ask(mesh, "gateway/edge", url)) for url in (
        "http://foo.example.com/x", "http://bar.example.com/only", "http://bar.example.com/x",
        "http://zzz.example.com/only", "http://other.org/x")}
    assert answers == {
        "http://foo.example.com/x": {"default/api": 100.0},  # only the foo listener's route
        "http://bar.example.com/only": {"default/api-v2": 100.0},  # exact hostname first
        "http://bar.example.com/x": {"default/api-v1": 100.0},  # then the wildcard's rules
        "http://zzz.example.com/only": {"default/api-v1": 100.0},
        "http://other.org/x": {"default/api-v1": 100.0},
    }


def test_a_route_hostname_outside_the_listener_is_not_served() -> None:
    mesh = mesh_of(edge(to("api", hostnames="[a.example.com, a.example.org]",
                           parent="{name: edge, sectionName: wild}")))
    table = as_dict(compiled(mesh, gateway("edge")), ROUTE.type_url, "gateway|80")
    assert [host["domains"] for host in table["virtual_hosts"]] == [["a.example.com"]]


def test_https_terminates_with_the_secret_and_routes_by_sni() -> None:
    mesh = mesh_of(edge(to("api", parent="{name: edge, sectionName: https}")))
    resources = compiled(mesh, gateway("edge"))
    listener = as_dict(resources, LISTENER.type_url, "gateway|443")
    assert listener["address"]["socket_address"] == {"address": "10.1.2.3", "port_value": 443}
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"
    [chain] = listener["filter_chains"]
    assert chain["filter_chain_match"] == {"server_names": ["secure.example.com"],
                                           "transport_protocol": "tls"}
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificates"][0]["certificate_chain"]["inline_string"] == PEM
    hcm = chain["filters"][0]["typed_config"]
    assert hcm["rds"]["route_config_name"] == "gateway|443|https"
    assert hcm["use_remote_address"] is True
    answer = ask(mesh, "gateway/edge", "https://secure.example.com/a")
    assert clusters_of(answer) == {"default/api": 100.0}


def test_tls_passthrough_chains_per_tlsroute_hostname() -> None:
    text = edge() + """---
apiVersion: v1
kind: Service
metadata: {name: vault}
spec: {ports: [{name: tls, port: 8200, appProtocol: tls}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: vault}
spec:
  parentRefs: [{name: edge, sectionName: pass}]
  hostnames: [vault.tls.example.com]
  rules: [{backendRefs: [{name: vault, port: 8200}]}]
"""
    listener = as_dict(compiled(mesh_of(text), gateway("edge")), LISTENER.type_url,
                       "gateway|443")
    https, chain = listener["filter_chains"]  # the HTTPS listener's chain, the TLSRoute's
    assert https["filter_chain_match"]["server_names"] == ["secure.example.com"]
    assert chain["filter_chain_match"]["server_names"] == ["vault.tls.example.com"]
    proxy = chain["filters"][0]["typed_config"]
    assert proxy["cluster"] == "outbound|8200||vault.default"
    assert "transport_socket" not in chain  # Passthrough: the bytes go untouched


def test_a_terminating_tls_listener_decrypts_for_its_tlsroute() -> None:
    """GATEWAY-TLS extended (TLSRouteModeTerminate): a TLS listener in mode Terminate serves
    its TLSRoutes' connections with the listener's certificates and sends the plain bytes to
    the backends; no ALPN is offered (what runs inside is the backend's business)."""
    text = edge() + """---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: inner}
spec:
  gatewayClassName: pointsman
  addresses: [{type: IPAddress, value: 10.1.2.4}]
  listeners:
  - name: term
    port: 9443
    protocol: TLS
    hostname: "*.term.example.com"
    tls: {mode: Terminate, certificateRefs: [{name: cert}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: {name: db}
spec:
  parentRefs: [{name: inner}]
  hostnames: [db.term.example.com]
  rules: [{backendRefs: [{name: db, port: 5432}]}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}]}
"""
    listener = as_dict(compiled(mesh_of(text), gateway("inner")), LISTENER.type_url,
                       "gateway|9443")
    (chain,) = listener["filter_chains"]
    assert chain["filter_chain_match"] == {"server_names": ["db.term.example.com"],
                                           "transport_protocol": "tls"}
    tls = chain["transport_socket"]["typed_config"]["common_tls_context"]
    assert tls["tls_certificates"][0]["certificate_chain"]["inline_string"] == PEM
    assert "alpn_protocols" not in tls
    assert chain["filters"][0]["typed_config"]["cluster"] == "outbound|5432||db.default"


def test_gateway_authorization_on_a_listener_with_its_own_chain() -> None:
    text = edge(to("api", parent="{name: edge, sectionName: https}")) + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: admins}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge,
                sectionName: https}]
  authorization:
    defaultAction: Deny
    rules: [{name: office, action: Allow, principal: {clientCIDRs: [10.10.1.0/24]}}]
"""
    resources = compiled(mesh_of(text), gateway("edge"))
    chain = as_dict(resources, LISTENER.type_url, "gateway|443")["filter_chains"][0]
    filters = chain["filters"][0]["typed_config"]["http_filters"]
    rbac = next(item for item in filters if item["name"] == "envoy.filters.http.rbac")
    assert rbac["typed_config"]["rules"] == {"policies": {"0-office": {  # ALLOW: the default
        "permissions": [{"any": True}],
        "principals": [{"remote_ip": {"address_prefix": "10.10.1.0", "prefix_len": 24}}]}}}
    plain = as_dict(resources, LISTENER.type_url, "gateway|80")
    names = [item["name"] for item in
             plain["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"]]
    assert "envoy.filters.http.rbac" not in names  # scoped to the https listener
    answer = ask(mesh_of(text), "gateway/edge", "https://secure.example.com/")
    assert "authorization at the Gateway: 1 rule(s), default Deny (SecurityPolicy " \
           "default/admins)" in answer.policies


def test_tcp_listener_proxies_to_its_tcproute() -> None:
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: pg}
spec: {ports: [{name: pg, port: 5432, appProtocol: postgresql}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: db}
spec:
  gatewayClassName: pointsman
  listeners: [{name: pg, port: 5432, protocol: TCP}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: pg}
spec:
  parentRefs: [{name: db}]
  rules: [{backendRefs: [{name: pg, port: 5432}]}]
"""
    mesh = mesh_of(text)
    answer = ask(mesh, "gateway/db", "tcp://anything:5432")
    assert clusters_of(answer) == {"default/pg": 100.0}
    listener = as_dict(compiled(mesh, gateway("db")), LISTENER.type_url, "gateway|5432")
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    assert "hash_policy" not in listener["filter_chains"][0]["filters"][0]["typed_config"]
    hashed = mesh_of(text + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: pg}
spec:
  targetRefs: [{group: "", kind: Service, name: pg}]
  loadBalancer: {type: ConsistentHash, consistentHash: {type: SourceIP}}
""")
    listener = as_dict(compiled(hashed, gateway("db")), LISTENER.type_url, "gateway|5432")
    assert listener["filter_chains"][0]["filters"][0]["typed_config"]["hash_policy"] == [
        {"source_ip": {}}]


def test_client_traffic_policy_timeouts_on_a_listener() -> None:
    text = edge(to("api", parent="{name: edge, sectionName: https}")) + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: tunnels}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge,
                sectionName: https}]
  timeout: {http: {idleTimeout: 30s, streamIdleTimeout: 1h, requestReceivedTimeout: 10s}}
"""
    resources = compiled(mesh_of(text), gateway("edge"))
    chain = as_dict(resources, LISTENER.type_url, "gateway|443")["filter_chains"][0]
    hcm = chain["filters"][0]["typed_config"]
    assert (hcm["stream_idle_timeout"], hcm["request_timeout"],
            hcm["common_http_protocol_options"]) == ("3600s", "10s", {"idle_timeout": "30s"})
    plain = as_dict(resources, LISTENER.type_url, "gateway|80")
    assert "stream_idle_timeout" not in plain["filter_chains"][0]["filters"][0]["typed_config"]


def test_a_gateway_route_takes_its_backend_services_retry_and_timeout() -> None:
    text = edge(to("api", parent="{name: edge, sectionName: any}")) + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: api}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  retry: {numRetries: 5}
  timeout: {http: {requestTimeout: 7s}}
"""
    answer = ask(mesh_of(text), "gateway/edge", "http://any.org/")
    assert "timeout: 7s" in answer.policies
    assert any(item.startswith("retry: 5 on") for item in answer.policies)
