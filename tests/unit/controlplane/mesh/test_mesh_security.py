"""Automatic mTLS and Istio's PeerAuthentication / AuthorizationPolicy compiled for sidecars
(compile/mtls.py, compile/authz.py, security.py); the RBAC rules are run with the sidecar's
own RBAC filter against requests from given peers."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2

from controlplane.mesh.compile.compiler import MeshCompiler, NodeResources
from controlplane.mesh.compile.memo import Endpoints
from controlplane.mesh.errors import MeshError
from controlplane.mesh.explain import ExplainError, explain
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.resolve import Mesh
from controlplane.resources import CLUSTER, ENDPOINT, LISTENER
from protos.loader import parse_message
from proxy.http.filter import HttpStream
from proxy.http.filters import rbac
from proxy.http.peer import PEER_KEY, PeerTls
from tests.unit.controlplane.mesh.helpers import SERVICES, as_dict, mesh_of, sidecar
from tests.unit.proxy.http.routes import request

IDENTITY = MeshIdentity()
SPIFFE = "spiffe://cluster.local/ns/"
MESH = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: db, labels: {app: db}}
spec: {ports: [{name: pg, port: 5432, appProtocol: postgresql}]}
---
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec: {ports: [{name: http, port: 9090, appProtocol: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-1, labels: {kubernetes.io/service-name: legacy}}
addressType: IPv4
ports: [{name: http, port: 9090}]
endpoints: [{addresses: [192.0.2.7]}]
"""


def secured(extra: str = "", identity: MeshIdentity | None = IDENTITY,
            caller: str = "web") -> NodeResources:
    return MeshCompiler(mesh_of(MESH + extra), identity=identity).compile_node(sidecar(caller))


def listener(resources: NodeResources, port: int) -> dict[str, Any]:
    return as_dict(resources, LISTENER.type_url, f"inbound|{port}")


def _peer_authentication(name: str, namespace: str, spec: str) -> str:
    return f"""---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def _authorization(name: str, spec: str, namespace: str = "default") -> str:
    return f"""---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


# ---- automatic mTLS, outbound -----------------------------------------------------------------

RAW_BUFFER = {"name": "envoy.transport_sockets.raw_buffer", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}
SIDECAR_LABEL = {"filter_metadata": {"envoy.transport_socket_match": {"tlsMode": "istio"}}}


def _mtls_socket(cluster: dict[str, Any]) -> dict[str, Any]:
    """The TLS socket of istiod's auto-mTLS matches, checking their names, order and default."""
    matches = cluster["transport_socket_matches"]
    assert [(item["name"], item.get("match", {})) for item in matches] == [
        ("tlsMode-istio", {"tlsMode": "istio"}), ("tlsMode-disabled", {})]
    assert matches[1]["transport_socket"] == RAW_BUFFER
    assert "transport_socket" not in cluster  # the default: plaintext
    socket: dict[str, Any] = matches[0]["transport_socket"]
    return socket


def test_callers_use_mtls_to_sidecar_endpoints() -> None:
    cluster = as_dict(secured(), CLUSTER.type_url, "outbound|8080||api.default")
    socket = _mtls_socket(cluster)
    assert socket["name"] == "envoy.transport_sockets.tls"
    context = socket["typed_config"]
    assert context["sni"] == "outbound_.8080_._.api.default.svc.cluster.local"
    common = context["common_tls_context"]
    ads = {"ads": {}, "resource_api_version": "V3"}
    assert common["tls_certificate_sds_secret_configs"] == [{"name": "default",
                                                             "sds_config": ads}]
    assert common["combined_validation_context"] == {
        "default_validation_context": {"match_typed_subject_alt_names": [{
            "san_type": "URI", "matcher": {"exact": SPIFFE + "default/sa/api"}}]},
        "validation_context_sds_secret_config": {"name": "ROOTCA", "sds_config": ads}}
    assert common["alpn_protocols"] == ["http/1.1"]
    db = _mtls_socket(as_dict(secured(), CLUSTER.type_url, "outbound|5432||db.default"))
    assert "alpn_protocols" not in db["typed_config"]["common_tls_context"]


def _mixed_endpoints() -> Endpoints:
    endpoints = Endpoints()
    endpoints.by_service = {("default", "legacy"): ("10.0.0.8",),
                            ("default", "api"): ("10.0.0.9",)}
    return endpoints


def test_sidecar_endpoints_are_labelled_and_endpoint_slice_addresses_are_not() -> None:
    """A Service with a sidecar and an EndpointSlice address: the sidecar is called over mTLS,
    the address in plaintext, through one cluster (Istio's per-endpoint auto mTLS)."""
    resources = MeshCompiler(mesh_of(MESH), _mixed_endpoints(), identity=IDENTITY
                             ).compile_node(sidecar("web"))
    _mtls_socket(as_dict(resources, CLUSTER.type_url, "outbound|9090||legacy.default"))
    assignment = as_dict(resources, ENDPOINT.type_url, "outbound|9090||legacy.default")
    labels = {item["endpoint"]["address"]["socket_address"]["address"]: item.get("metadata")
              for item in assignment["endpoints"][0]["lb_endpoints"]}
    assert labels == {"10.0.0.8": SIDECAR_LABEL, "192.0.2.7": None}


def test_the_proxy_model_picks_mtls_for_the_sidecar_and_plaintext_for_the_address() -> None:
    """The compiled cluster and endpoints, translated by the sidecar's own model, choose a
    socket per endpoint as Envoy would (proxy.model.socket_match)."""
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2

    from proxy.model.cluster import translate_cluster
    from proxy.model.endpoint import translate_cluster_load_assignment
    resources = MeshCompiler(mesh_of(MESH), _mixed_endpoints(), identity=IDENTITY
                             ).compile_node(sidecar("web"))
    name = "outbound|9090||legacy.default"
    cluster = cluster_pb2.Cluster()
    resources.resources[CLUSTER.type_url][name].packed.Unpack(cluster)
    assignment = endpoint_pb2.ClusterLoadAssignment()
    resources.resources[ENDPOINT.type_url][name].packed.Unpack(assignment)
    model = translate_cluster(cluster)
    chosen = {endpoint.address: model.socket_for(endpoint.socket_metadata, None)
              for endpoint in translate_cluster_load_assignment(assignment).all_endpoints()}
    assert chosen["10.0.0.8"].name == "tlsMode-istio"
    assert chosen["10.0.0.8"].transport is not None
    assert (chosen["192.0.2.7"].name, chosen["192.0.2.7"].transport) == ("tlsMode-disabled",
                                                                          None)


def test_meshes_without_identity_stay_plaintext_and_unlabelled() -> None:
    plain = MeshCompiler(mesh_of(MESH), _mixed_endpoints()).compile_node(sidecar("web"))
    cluster = as_dict(plain, CLUSTER.type_url, "outbound|8080||api.default")
    assert "transport_socket" not in cluster and "transport_socket_matches" not in cluster
    assignment = as_dict(plain, ENDPOINT.type_url, "outbound|9090||legacy.default")
    assert all("metadata" not in item for item in assignment["endpoints"][0]["lb_endpoints"])


def test_callers_send_plaintext_to_a_port_whose_peer_authentication_disables_mtls() -> None:
    """DISABLE: no matches at all, so even a sidecar endpoint is called in plaintext (istiod's
    buildAutoMtlsSettings gives no TLS for MTLSDisable)."""
    extra = _peer_authentication("api", "default", "{selector: {matchLabels: {app: db}}, "
                                 "portLevelMtls: {5432: {mode: DISABLE}}}")
    db = as_dict(secured(extra), CLUSTER.type_url, "outbound|5432||db.default")
    assert "transport_socket" not in db and "transport_socket_matches" not in db


# ---- PeerAuthentication, inbound --------------------------------------------------------------

def _modes(resources: NodeResources, port: int) -> list[str]:
    """The transport protocols the port's chains take ("any": a plaintext-only listener)."""
    found = listener(resources, port)
    out = []
    for chain in found["filter_chains"]:
        protocol = chain.get("filter_chain_match", {}).get("transport_protocol", "any")
        if protocol == "tls":
            context = chain["transport_socket"]["typed_config"]
            assert context["require_client_certificate"] is True
            assert context["common_tls_context"]["validation_context_sds_secret_config"][
                "name"] == "ROOTCA"
        out.append(protocol)
    if out != ["any"]:
        assert [item["name"] for item in found["listener_filters"]] == [
            "envoy.filters.listener.tls_inspector"]
    return out


def test_default_mode_is_permissive_tls_and_plaintext_on_one_port() -> None:
    assert _modes(secured(caller="api"), 8080) == ["tls", "raw_buffer"]
    assert _modes(secured(identity=None, caller="api"), 8080) == ["any"]


@pytest.mark.parametrize(("policies", "expected"), [
    (_peer_authentication("mesh", "istio-system", "{mtls: {mode: STRICT}}"), ["tls"]),
    (_peer_authentication("mesh", "istio-system", "{mtls: {mode: STRICT}}")
     + _peer_authentication("ns", "default", "{mtls: {mode: DISABLE}}"), ["any"]),
    (_peer_authentication("ns", "default", "{mtls: {mode: STRICT}}")
     + _peer_authentication("other", "other", "{mtls: {mode: DISABLE}}"), ["tls"]),
    (_peer_authentication("ns", "default", "{mtls: {mode: STRICT}}")
     + _peer_authentication("db", "default", "{selector: {matchLabels: {app: db}}, "
                                             "mtls: {mode: UNSET}, "
                                             "portLevelMtls: {5432: {mode: PERMISSIVE}}}"),
     ["tls", "raw_buffer"]),
    (_peer_authentication("db", "default", "{selector: {matchLabels: {app: nope}}, "
                                           "mtls: {mode: STRICT}}"), ["tls", "raw_buffer"]),
])
def test_peer_authentication_precedence(policies: str, expected: list[str]) -> None:
    assert _modes(secured(policies, caller="db"), 5432) == expected


def test_peer_authentication_validation_names_the_field() -> None:
    with pytest.raises(MeshError, match=r"portLevelMtls.*needs a selector"):
        mesh_of(MESH + _peer_authentication("x", "default",
                                            "{portLevelMtls: {80: {mode: STRICT}}}"))
    with pytest.raises(MeshError, match=r"mtls\.mode.*'SOMETIMES'"):
        mesh_of(MESH + _peer_authentication("x", "default", "{mtls: {mode: SOMETIMES}}"))


# ---- AuthorizationPolicy ---------------------------------------------------------------------

def _rbac_filters(resources: NodeResources, port: int) -> list[dict[str, Any]]:
    chain = listener(resources, port)["filter_chains"][0]["filters"][0]["typed_config"]
    return [item["typed_config"] for item in chain["http_filters"]
            if item["name"] == "envoy.filters.http.rbac"]


def _verdict(filters: list[dict[str, Any]], peer: str | None, path: str = "/",
             method: str = "GET", headers: tuple[tuple[str, str], ...] = (),
             remote: str = "10.1.2.3", authority: str = "api") -> str:
    """What the sidecar's RBAC filters, in order, do with one request."""
    stream = HttpStream(request(path, authority, method, headers), (remote, 4000),
                        ("10.0.0.1", 8080), 1)
    if peer is not None:
        stream.connection_state[PEER_KEY] = PeerTls((SPIFFE + peer,))
    for config in filters:
        body = {key: value for key, value in config.items() if key != "@type"}
        compiled = rbac.translate(parse_message(body, rbac_pb2.RBAC))
        matched = rbac.matched_policy(compiled, stream)
        if (matched is not None) != (compiled.action == "ALLOW"):
            return f"denied by {matched}" if matched else "denied"
    return "allowed"


def test_allow_by_principal_denies_other_services() -> None:
    extra = _authorization("api", """
      selector: {matchLabels: {}}
      rules:
      - from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]""")
    filters = _rbac_filters(secured(extra, caller="api"), 8080)
    assert [config["rules"].get("action", "ALLOW") for config in filters] == ["ALLOW"]
    assert _verdict(filters, "default/sa/web") == "allowed"
    assert _verdict(filters, "default/sa/api-v1") == "denied"
    assert _verdict(filters, None) == "denied"  # plaintext: no principal


def test_deny_before_allow_and_no_allow_policy_allows_all() -> None:
    deny = _authorization("no-admin", """
      action: DENY
      rules:
      - to: [{operation: {paths: [/admin*]}}]
        from: [{source: {notNamespaces: [ops]}}]""")
    filters = _rbac_filters(secured(deny, caller="api"), 8080)
    assert _verdict(filters, "default/sa/web", "/admin/x") == \
        "denied by ns[default]-policy[no-admin]-rule[0]"
    assert _verdict(filters, "ops/sa/tool", "/admin/x") == "allowed"
    assert _verdict(filters, "default/sa/web", "/app") == "allowed"
    assert _rbac_filters(secured(caller="api"), 8080) == []


def test_an_allow_policy_that_matches_nothing_denies_everything() -> None:
    filters = _rbac_filters(secured(_authorization("none", "{}"), caller="api"), 8080)
    assert filters[0]["rules"] == {}  # action ALLOW (the default) with no policy
    assert _verdict(filters, "default/sa/web") == "denied"
    everyone = _authorization("all", "{rules: [{}]}")
    assert _verdict(_rbac_filters(secured(everyone, caller="api"), 8080), None) == "allowed"


def test_operations_conditions_and_ports() -> None:
    extra = _authorization("ops", """
      rules:
      - from: [{source: {namespaces: [default], ipBlocks: [10.1.0.0/16]}}]
        to: [{operation: {methods: [GET, HEAD], paths: ["/api/*", /health], ports: ["8080"],
                          hosts: ["*.example.com"]}}]
        when:
        - {key: "request.headers[x-tenant]", values: ["acme*"], notValues: [acme-test]}
        - {key: source.principal, notValues: ["*/sa/api-v2"]}
      - to: [{operation: {ports: ["9999"]}}]""")
    filters = _rbac_filters(secured(extra, caller="api"), 8080)
    assert list(filters[0]["rules"]["policies"]) == ["ns[default]-policy[ops]-rule[0]"]
    good: dict[str, Any] = {"path": "/api/x", "headers": (("x-tenant", "acme"),),
                            "authority": "a.Example.com"}
    assert _verdict(filters, "default/sa/web", **good) == "allowed"
    assert _verdict(filters, "default/sa/api-v2", **good) == "denied"
    assert _verdict(filters, "other/sa/web", **good) == "denied"
    assert _verdict(filters, "default/sa/web", **good, method="POST") == "denied"
    assert _verdict(filters, "default/sa/web", **good, remote="10.2.0.1") == "denied"
    assert _verdict(filters, "default/sa/web", **{**good, "authority": "a.example.org"}) \
        == "denied"
    assert _verdict(filters, "default/sa/web",
                    **{**good, "headers": (("x-tenant", "acme-test"),)}) == "denied"
    assert _verdict(filters, "default/sa/web", **{**good, "path": "/health"}) == "allowed"
    assert _verdict(filters, "default/sa/web", **{**good, "path": "/healthz"}) == "denied"


def test_policies_select_workloads_by_service_labels_and_root_namespace() -> None:
    selected = _authorization("db-only", "{selector: {matchLabels: {app: db}}}")
    assert _rbac_filters(secured(selected, caller="api"), 8080) == []
    mesh_wide = _authorization("mesh", "{action: DENY, rules: [{to: [{operation: "
                                       "{paths: [/x]}}]}]}", namespace="istio-system")
    assert _verdict(_rbac_filters(secured(mesh_wide, caller="api"), 8080), None, "/x") \
        == "denied by ns[istio-system]-policy[mesh]-rule[0]"
    other = _authorization("elsewhere", "{}", namespace="other")
    assert _rbac_filters(secured(other, caller="api"), 8080) == []


@pytest.mark.parametrize(("spec", "message"), [
    ("{action: AUDIT}", r"spec\.action.*AUDIT is not supported"),
    ("{action: CUSTOM, provider: {name: x}}", r"CUSTOM is not supported"),
    ("{rules: [{from: [{source: {requestPrincipals: [a]}}]}]}",
     r"requestPrincipals.*not supported"),
    ("{rules: [{when: [{key: 'request.auth.claims[iss]', values: [a]}]}]}",
     r"when\[0\]\.key.*'request\.auth\.claims\[iss\]' is not supported"),
    ("{rules: [{to: [{operation: {paths: ['/a/*/b']}}]}]}", r"paths\[0\].*'\*'"),
    ("{rules: [{to: [{operation: {ports: ['http']}}]}]}", r"ports\[0\].*invalid port"),
    ("{rules: [{from: [{source: {}}]}]}", r"source.*at least one field"),
    ("{targetRefs: [{kind: Service, name: api}]}", r"targetRefs.*not supported"),
    ("{rules: [{when: [{key: 'request.headers[a b]', values: [x]}]}]}",
     r"when\[0\]\.key.*invalid header name 'a b'"),
])
def test_authorization_policy_refuses_by_field_path(spec: str, message: str) -> None:
    with pytest.raises(MeshError, match=message):
        mesh_of(MESH + _authorization("bad", spec))


def test_mesh_object_kinds_are_listed() -> None:
    mesh: Mesh = mesh_of(MESH + _authorization("a", "{}")
                         + _peer_authentication("p", "default", "{}"))
    assert [item.name for item in mesh.of_kind("AuthorizationPolicy")] == ["a"]
    assert [item.name for item in mesh.of_kind("PeerAuthentication")] == ["p"]


# ---- explain --from spiffe://... --------------------------------------------------------------

def _admission(extra: str, caller: str, url: str = "http://api:8080/x",
               identity: MeshIdentity | None = IDENTITY) -> str:
    answer = explain(mesh_of(MESH + extra), caller, "GET", url, [], identity=identity)
    [backend] = answer.backends
    return backend.admission


def test_explain_says_whether_a_caller_identity_is_admitted_and_by_which_rule() -> None:
    extra = _authorization("api", """
      rules:
      - from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]
        to: [{operation: {paths: [/x]}}]""")
    assert _admission(extra, SPIFFE + "default/sa/web") == (
        "allowed over mTLS (PERMISSIVE): ALLOW policy rule ns[default]-policy[api]-rule[0]")
    assert _admission(extra, "web") == (
        "allowed over mTLS (PERMISSIVE): ALLOW policy rule ns[default]-policy[api]-rule[0]")
    assert _admission(extra, SPIFFE + "default/sa/api-v1") == (
        "denied over mTLS (PERMISSIVE): no ALLOW policy rule matches (403)")
    assert _admission(extra, "web", identity=None) == (
        "denied over plaintext (DISABLE): no ALLOW policy rule matches (403)")
    assert _admission("", "web") == ("allowed over mTLS (PERMISSIVE): no AuthorizationPolicy "
                                     "denies it and none requires an ALLOW")


def test_explain_tells_strict_refusing_plaintext_callers() -> None:
    strict = _peer_authentication("ns", "default", "{mtls: {mode: STRICT}}")
    assert _admission(strict, "web").startswith("allowed over mTLS (STRICT)")
    # legacy also has an EndpointSlice address, but callers choose per endpoint: its sidecars
    # are called over mTLS (before per-endpoint auto mTLS, plaintext that STRICT refused).
    assert _admission(strict, "web", "http://legacy:9090/").startswith(
        "allowed over mTLS (STRICT)")
    disabled = _peer_authentication("ns", "default", "{mtls: {mode: DISABLE}}")
    assert _admission(disabled, "web").startswith("allowed over plaintext (DISABLE)")
    assert _admission(strict, "web", identity=None).startswith("allowed over plaintext "
                                                                "(DISABLE)")


def test_explain_refuses_a_foreign_trust_domain() -> None:
    with pytest.raises(ExplainError, match="trust domain"):
        explain(mesh_of(MESH), "spiffe://other.domain/ns/default/sa/web", "GET",
                "http://api:8080/", [], identity=IDENTITY)


# ---- describe ---------------------------------------------------------------------------------

def test_describe_shows_identity_mtls_per_port_and_the_policies() -> None:
    from controlplane.api import describe as api_describe
    from controlplane.commands.describe import render
    from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb
    mesh = mesh_of(MESH + _peer_authentication("db", "default", "{selector: {matchLabels: "
                                               "{app: db}}, mtls: {mode: STRICT}}")
                   + _authorization("any", "{rules: [{}]}"))
    db = mesh.service("default", "db")
    assert db is not None
    ports = api_describe._ports(mesh, db, IDENTITY)
    assert [(item.mtls_mode, item.mtls_source, item.callers_use_mtls) for item in ports] == [
        ("STRICT", "PeerAuthentication default/db", True)]
    assert [(item.mtls_mode, item.callers_use_mtls)
            for item in api_describe._ports(mesh, db, None)] == [("DISABLE", False)]
    policies = api_describe._istio_policies(mesh, db, IDENTITY)
    assert [(item.policy.kind, item.policy.name) for item in policies] == [
        ("PeerAuthentication", "db"), ("AuthorizationPolicy", "any")]
    found = pb.ServiceDescription(
        service=pb.Object(json=b'{"metadata": {"name": "db", "namespace": "default"}}'),
        ports=ports, identity=IDENTITY.spiffe_id("default", "db"))
    text = render(found)
    assert "Identity:      spiffe://cluster.local/ns/default/sa/db" in text
    assert "STRICT   mTLS      PeerAuthentication default/db" in text


def test_a_policy_elsewhere_rebuilds_nothing_and_one_here_rebuilds_the_inbound_part() -> None:
    compiler = MeshCompiler(mesh_of(MESH), identity=IDENTITY)
    compiler.compile_node(sidecar("api"))
    before = dict(compiler.memo.built)
    compiler.update(mesh_of(MESH + _authorization("x", "{}", namespace="other")))
    compiler.compile_node(sidecar("api"))
    assert compiler.memo.built == before
    compiler.update(mesh_of(MESH + _authorization("x", "{}")))
    compiler.compile_node(sidecar("api"))
    changed = {kind: count - before.get(kind, 0) for kind, count in compiler.memo.built.items()
               if count != before.get(kind, 0)}
    assert changed == {"inbound_part": 1, "inbound": 1}


def test_every_secured_resource_is_accepted_by_the_pointsman_sidecar() -> None:
    from proxy.bootstrap import ensure_network_filters
    from proxy.model.cluster import translate_cluster
    from proxy.model.listener import translate_listener
    from tests.unit.controlplane.mesh.helpers import CLASSES

    ensure_network_filters()
    extra = _peer_authentication("db", "default", "{selector: {matchLabels: {app: db}}, "
                                 "mtls: {mode: STRICT}}") + _authorization("all", """
      rules:
      - from: [{source: {principals: ["*"], namespaces: [default], ipBlocks: [10.0.0.0/8]}}]
        to: [{operation: {hosts: ["*.example.com"], methods: [GET], paths: ["/a*"]}}]
        when: [{key: "request.headers[x-a]", values: ["*"]}]""")
    translators = {LISTENER.type_url: translate_listener, CLUSTER.type_url: translate_cluster}
    count = 0
    for caller in ("api", "db"):
        for type_url, translate in translators.items():
            for resource in secured(extra, caller=caller).resources[type_url].values():
                message = CLASSES[type_url]()
                resource.packed.Unpack(message)
                translate(message)  # raises ConfigError naming the field
                count += 1
    assert count > 10


@pytest.mark.parametrize("spec", [
    "[]", "{rules: 7}", "{rules: [7]}", "{rules: [{from: {}}]}", "{rules: [{from: [7]}]}",
    "{rules: [{from: [{source: {principals: [7]}}]}]}",
    "{rules: [{from: [{source: {ipBlocks: [not-an-ip]}}]}]}",
    "{rules: [{to: [{operation: {ports: [0]}}]}]}", "{rules: [{to: [{operation: {}}]}]}",
    "{rules: [{when: [{key: source.ip, values: [nope]}]}]}",
    "{rules: [{when: [{key: destination.port, values: ['99999']}]}]}",
    "{rules: [{when: [{key: source.ip}]}]}", "{selector: {matchLabels: {a: 1}}}",
    "{action: allow}", "{selector: 5}",
])
def test_hostile_authorization_policies_are_refused_with_a_field(spec: str) -> None:
    with pytest.raises(MeshError, match=r"AuthorizationPolicy default/bad: spec"):
        mesh_of(MESH + _authorization("bad", spec))


@pytest.mark.parametrize("spec", [
    "{mtls: 7}", "{mtls: {mode: 7}}", "{selector: {matchLabels: {a: b}}, portLevelMtls: 7}",
    "{selector: {matchLabels: {a: b}}, portLevelMtls: {abc: {mode: STRICT}}}",
    "{selector: {matchLabels: {a: b}}, portLevelMtls: {80: 7}}",
    "{selector: {matchLabels: {a: b}}, portLevelMtls: {70000: {mode: STRICT}}}",
])
def test_hostile_peer_authentications_are_refused_with_a_field(spec: str) -> None:
    with pytest.raises(MeshError, match=r"PeerAuthentication default/bad: spec"):
        mesh_of(MESH + _peer_authentication("bad", "default", spec))


def test_describe_shows_how_callers_reach_each_endpoint() -> None:
    """Automatic mTLS is per endpoint: the sidecar is called with mTLS, the EndpointSlice
    address in plaintext (a port whose PeerAuthentication disables mTLS: plaintext too)."""
    import types

    from controlplane.api import describe as api_describe
    from controlplane.commands.describe import render
    from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb
    mesh = mesh_of(MESH)
    legacy = mesh.service("default", "legacy")
    assert legacy is not None
    cache: Any = types.SimpleNamespace(compiler=types.SimpleNamespace(
        endpoints=_mixed_endpoints()))
    mtls = {item.port: item.callers_use_mtls
            for item in api_describe._ports(mesh, legacy, IDENTITY)}
    assert mtls == {9090: True}
    endpoints = api_describe._endpoints(mesh, cache, legacy, [], mtls)
    assert [(item.address, item.transport) for item in endpoints] == [
        ("10.0.0.8", "mTLS"), ("192.0.2.7", "plaintext")]
    assert api_describe._transport({8080: True, 5432: False}) == \
        "plaintext on 5432, mTLS on 8080"
    found = pb.ServiceDescription(
        service=pb.Object(json=b'{"metadata": {"name": "legacy", "namespace": "default"}}'),
        endpoints=endpoints)
    text = render(found)
    assert "CALLED WITH" in text and "plaintext     EndpointSlice legacy-1" in text
    assert "mTLS          sidecar (another replica's)" in text
