"""`analyze`: each finding with its file, line, field and reason."""

from __future__ import annotations

import textwrap

from controlplane.mesh import read_objects
from controlplane.mesh.analyze import analyze
from tests.unit.controlplane.mesh.helpers import SERVICES, route


def findings(text: str) -> list[tuple[str, str, int, str]]:
    objects, errors = read_objects(textwrap.dedent(text), "m.yaml")
    return [(item.severity, item.reason, item.location.line, item.location.field)
            for item in analyze(objects, errors)]


def test_a_clean_mesh_has_no_findings() -> None:
    assert findings(SERVICES + route("rules: [{backendRefs: [{name: api-v1, port: 8080}]}]")) \
        == []


def test_shadowed_rules_within_and_across_routes() -> None:
    text = SERVICES + route("""
    rules:
    - matches: [{path: {value: /a}, headers: [{name: x, value: "1"}]}]
      backendRefs: [{name: api-v1, port: 8080}]
    - matches: [{path: {value: /a}, headers: [{name: x, value: "1"}]}, {path: {value: /b}}]
      backendRefs: [{name: api-v2, port: 8080}]
    """, name="first", created="2024-01-01T00:00:00Z") + route("""
    rules:
    - matches: [{path: {value: /b}}]
      backendRefs: [{name: api-v1, port: 8080}]
    """, name="later", created="2024-02-01T00:00:00Z")
    found = findings(text)
    shadowed = [item for item in found if item[1] == "Shadowed"]
    assert [(item[2], item[3]) for item in shadowed] == [
        (30, "spec.rules[1].matches[0]"),  # the same match as rule 0: never reached
        (40, "spec.rules[0].matches[0]")]  # the older route's /b comes first


def test_a_more_specific_match_later_in_the_list_is_not_shadowed() -> None:
    text = SERVICES + route("""
    rules:
    - matches: [{path: {value: /}}]
      backendRefs: [{name: api-v1, port: 8080}]
    - matches: [{path: {value: /v2}}]
      backendRefs: [{name: api-v2, port: 8080}]
    """)
    assert findings(text) == []


def test_references_weights_policies_and_protocols() -> None:
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: pg, port: 5432, appProtocol: postgresql}]}
""" + route("""
rules:
- backendRefs: [{name: ghost, port: 8080}, {name: db, port: 5432}]
- matches: [{path: {value: /z}}]
  backendRefs: [{name: api-v1, port: 8080, weight: 0}]
""", parent='{group: "", kind: Service, name: nowhere}') + """---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: missing}]
  authorization: {defaultAction: Allow}
"""
    reasons = {(item[1], item[3]) for item in findings(text)}
    assert reasons == {
        ("OpaqueAppProtocol", "spec.ports[0].appProtocol"),
        ("NoMatchingParent", "spec.parentRefs[0]"),
        ("BackendNotFound", "spec.rules[0].backendRefs[0]"),
        ("UnsupportedProtocol", "spec.rules[0].backendRefs[1]"),
        ("AllWeightsZero", "spec.rules[1].backendRefs"),
        ("TargetNotFound", "spec.targetRefs"),
    }


def test_load_errors_are_findings_too() -> None:
    found = findings(SERVICES + "---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
                                "spec: {ports: [{port: 1, color: red}]}\n")
    assert found == [("error", "Invalid", 24, "spec.ports[0].color")]


def test_a_policy_enforced_on_http_says_so_for_a_tcp_port() -> None:
    text = """\
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}, {name: web, port: 80,
                appProtocol: http}]}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: "", kind: Service, name: db}]
  authorization: {defaultAction: Deny}
"""
    assert findings(text) == [("warning", "NotEnforced", 11, "spec.targetRefs[0]")]


def test_a_gateway_naming_an_absent_class() -> None:
    text = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pointsman}
spec: {controllerName: pointsman.io/mesh}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP}]
"""
    assert findings(text) == [("warning", "InvalidGatewayClass", 10, "spec.gatewayClassName")]


def test_istio_security_policies_that_do_nothing_here() -> None:
    text = SERVICES + """---
apiVersion: v1
kind: Service
metadata: {name: db, labels: {app: db}}
spec: {ports: [{name: pg, port: 5432, appProtocol: tcp}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: first, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: second, namespace: default}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ports, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  portLevelMtls: {5433: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nobody, namespace: default}
spec:
  selector: {matchLabels: {app: ghost}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: db, namespace: default}
spec:
  selector: {matchLabels: {app: db}}
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/web]}}]
  - to: [{operation: {methods: [GET]}}]
"""
    found = [item for item in findings(text) if item[2] > 20]
    assert found == [
        ("warning", "Conflicted", 34, "spec"),
        ("warning", "NoSuchPort", 41, "spec.portLevelMtls"),
        ("warning", "NoWorkload", 47, "spec.selector"),
        ("warning", "HttpOnlyOnTcp", 56, "spec.rules[1]"),  # rule 0 is enforced on TCP
    ]
    sliced = text + """---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [192.0.2.7]}]
"""
    # api has an EndpointSlice too: callers choose mTLS or plaintext per endpoint, so its
    # STRICT sidecars still get mTLS (no PlaintextCallers warning since per-endpoint mTLS).
    assert [item for item in findings(sliced) if item[1] == "PlaintextCallers"] == []


def test_a_kept_compiler_reuses_the_unchanged_units_and_finds_the_same() -> None:
    """The mesh API keeps one compiler across applies: analyzing a changed mesh builds only
    the virtual hosts the change touched, and reports what a fresh analysis reports."""
    from controlplane.mesh.compile import vhosts
    from controlplane.mesh.compile.compiler import MeshCompiler

    clean = SERVICES + route("""
    rules:
    - matches: [{path: {value: /a}}]
      backendRefs: [{name: api-v1, port: 8080}]
    """)
    shadowing = SERVICES + route("""
    rules:
    - matches: [{path: {value: /a}}]
      backendRefs: [{name: api-v1, port: 8080}]
    - matches: [{path: {value: /a}}]
      backendRefs: [{name: api-v2, port: 8080}]
    """)
    compiler = MeshCompiler()
    built: list[tuple[str, int]] = []
    original = vhosts.service_vhost

    def counting(view, namespace, name, port, seen_as):  # type: ignore[no-untyped-def]
        built.append((name, port))
        return original(view, namespace, name, port, seen_as)
    import controlplane.mesh.analyze as analyze_module
    import controlplane.mesh.compile.sidecar as sidecar_module
    analyze_module.service_vhost = counting  # type: ignore[assignment]
    sidecar_module.service_vhost = counting  # type: ignore[attr-defined]
    try:
        assert analyze(read_objects(textwrap.dedent(clean))[0], compiler=compiler) == []
        first = len(built)
        again = analyze(read_objects(textwrap.dedent(shadowing))[0], compiler=compiler)
        rebuilt = built[first:]
    finally:
        analyze_module.service_vhost = original  # type: ignore[assignment]
        sidecar_module.service_vhost = original  # type: ignore[attr-defined]
    assert first > len(set(rebuilt)) > 0
    assert set(rebuilt) == {("api", 8080)}  # the Service the route attaches to, nothing else
    fresh = analyze(read_objects(textwrap.dedent(shadowing))[0])
    assert [str(item) for item in again] == [str(item) for item in fresh]
    assert [item.reason for item in again] == ["Shadowed"]
