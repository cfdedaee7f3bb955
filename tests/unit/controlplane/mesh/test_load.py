"""Loading mesh objects: every error names the file, the line, the object and the field path;
nothing unknown is taken silently; hostile YAML gets an error, not a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.mesh.errors import MeshError
from controlplane.mesh.load import load_objects, load_path, read_objects

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  ports:
  - name: http
    port: 8080
    appProtocol: http
"""


def error_of(text: str) -> MeshError:
    with pytest.raises(MeshError) as caught:
        load_objects(text, "mesh.yaml")
    return caught.value


def test_a_service_loads_with_the_default_namespace() -> None:
    [service] = load_objects(SERVICE, "mesh.yaml")
    assert service.key == ("Service", "default", "api")
    assert service.spec.ports[0].port == 8080
    assert service.spec.ports[0].target_port == 8080
    assert service.location().line == 1


def test_an_error_names_file_line_object_and_field_path() -> None:
    text = SERVICE + """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules:
  - matches:
    - path: {type: Exact, value: /a}
    - path: {type: Prefix, value: /b}
"""
    error = error_of(text)
    assert str(error) == ("mesh.yaml:19: HTTPRoute shop/web: spec.rules[0].matches[1].path.type: "
                          "unsupported value 'Prefix' (supported: Exact, PathPrefix, "
                          "RegularExpression)")
    assert error.line == 19
    assert error.field == "spec.rules[0].matches[1].path.type"


def test_an_unknown_field_is_refused_by_its_path() -> None:
    error = error_of(SERVICE.replace("    appProtocol: http\n",
                                     "    appProtocol: http\n    apProtocol: http\n"))
    assert error.field == "spec.ports[0].apProtocol"
    assert error.line == 10
    assert "unknown field" in error.message


def test_a_known_unsupported_field_says_so() -> None:
    text = """\
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: edge}]
  jwt: {providers: []}
"""
    error = error_of(text)
    assert error.field == "spec.jwt"
    assert "not supported by Pointsman" in error.message


@pytest.mark.parametrize(("text", "field", "message"), [
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "kind", "unknown kind 'Pod'"),
    ("apiVersion: v2\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 1}]}\n",
     "apiVersion", "not served as 'v2'"),
    ("apiVersion: v1\nkind: Service\nspec: {ports: [{port: 1}]}\n", "metadata", "is required"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: Bad_Name}\nspec: {ports: [{port: 1}]}\n",
     "metadata.name", "invalid value"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 70000}]}\n",
     "spec.ports[0].port", "at most 65535"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: '80'}]}\n",
     "spec.ports[0].port", "must be an integer"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
     "spec: {type: LoadBalancer, ports: [{port: 1}]}\n", "spec.type", "not supported"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
     "spec: {ports: [{port: 1, targetPort: http}]}\n", "spec.ports[0].targetPort", "named"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
     "spec: {ports: [{name: a, port: 1}, {name: a, port: 2}]}\n", "spec.ports[1].name",
     "duplicate port name"),
])
def test_field_rules(text: str, field: str, message: str) -> None:
    error = error_of(text)
    assert error.field == field
    assert message in error.message


def test_gateway_api_cel_rules_are_checked() -> None:
    route = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https}
    - type: URLRewrite
      urlRewrite: {hostname: x.example}
"""
    assert "either RequestRedirect or URLRewrite" in error_of(route).message
    twice = route.replace("URLRewrite\n      urlRewrite: {hostname: x.example}",
                          "RequestRedirect\n      requestRedirect: {scheme: http}")
    assert "cannot be repeated" in error_of(twice).message
    with_backends = route.replace(
        "    - type: URLRewrite\n      urlRewrite: {hostname: x.example}\n",
        "    backendRefs: [{name: a, port: 80}]\n")
    assert "must not be used together with backendRefs" in error_of(with_backends).message
    prefix = route.replace("requestRedirect: {scheme: https}",
                           "requestRedirect: {path: {type: ReplacePrefixMatch, "
                           "replacePrefixMatch: /x}}").replace(
        "    - type: URLRewrite\n      urlRewrite: {hostname: x.example}\n", "")
    assert "exactly one PathPrefix match" in error_of(
        prefix.replace("  - filters:", "  - matches: [{path: {type: Exact, value: /a}}]\n"
                                       "    filters:")).message
    load_objects(prefix, "ok.yaml")  # the default match is a PathPrefix on /


def test_timeouts_and_durations() -> None:
    route = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
  - timeouts: {request: 1s, backendRequest: 2s}
"""
    assert "cannot be longer than request timeout" in error_of(route).message
    bad = route.replace("request: 1s, backendRequest: 2s", "request: 1.5s")
    assert "GEP-2257" in error_of(bad).message
    [ok] = load_objects(route.replace("request: 1s, backendRequest: 2s",
                                      "request: 1m30s, backendRequest: 500ms"), "ok.yaml")
    assert ok.spec.rules[0].timeouts.request == 90.0
    assert ok.spec.rules[0].timeouts.backend_request == 0.5


def test_a_policy_feature_is_refused_on_targets_it_cannot_apply_to() -> None:
    text = """\
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}]
  rateLimit:
    local:
      rules: [{limit: {requests: 10, unit: Second}}]
"""
    error = error_of(text)
    assert error.field == "spec.rateLimit"
    assert "HTTPRoute target" in error.message
    [policy] = load_objects(text.replace("gateway.networking.k8s.io, kind: HTTPRoute",
                                         '"", kind: Service'), "ok.yaml")
    assert policy.spec.rate_limit.requests == 10


def test_malformed_yaml_names_the_line() -> None:
    error = error_of(SERVICE + "---\nkind: [unclosed\n")
    assert error.location.file == "mesh.yaml"
    assert error.line >= 11
    assert "malformed YAML" in error.message


def test_duplicate_keys_are_refused() -> None:
    error = error_of(SERVICE.replace("  name: api\n", "  name: api\n  name: other\n"))
    assert "duplicate key 'name'" in error.message
    assert error.line == 5


def test_an_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 12):
        previous = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([previous] * 10)}]")
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n" + "\n".join(lines) + "\n"
    error = error_of(text)
    assert "more than" in error.message


def test_deep_nesting_is_refused() -> None:
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: " + "[" * 200 + \
        "]" * 200 + "\n"
    assert "nested deeper" in error_of(text).message


def test_read_objects_reports_every_bad_object_and_keeps_the_good_ones() -> None:
    text = SERVICE + "---\napiVersion: v1\nkind: Nope\nmetadata: {name: a}\n---\n" + \
        SERVICE.replace("name: api", "name: web") + "---\napiVersion: v1\nkind: Service\n"
    objects, errors = read_objects(text, "m.yaml")
    assert [obj.name for obj in objects] == ["api", "web"]
    assert [error.line for error in errors] == [12, 25]  # the kind line; the object


def test_kubectl_lists_are_taken_apart(tmp_path: Path) -> None:
    indented = "\n".join("    " + line for line in SERVICE.splitlines())
    listed = "apiVersion: v1\nkind: List\nitems:\n-\n" + indented + "\n"
    (tmp_path / "list.yaml").write_text(listed)
    [service] = load_path(tmp_path)
    assert service.name == "api"
    assert service.location(("spec", "ports", 0, "port")).line == 12


def test_status_in_the_input_is_not_kept_and_bookkeeping_metadata_is_taken() -> None:
    text = SERVICE.replace("  name: api\n", "  name: api\n  uid: 123\n  resourceVersion: '9'\n"
                                            "  creationTimestamp: 2024-01-02T03:04:05Z\n")
    [service] = load_objects(text + "status: {loadBalancer: {}}\n", "m.yaml")
    assert service.meta.creation_timestamp == "2024-01-02T03:04:05Z"


def test_revision_changes_with_the_spec_only() -> None:
    [one] = load_objects(SERVICE, "a.yaml")
    [same] = load_objects("# a comment\n" + SERVICE, "b.yaml")
    [other] = load_objects(SERVICE.replace("8080", "8081"), "a.yaml")
    assert one.revision == same.revision != other.revision


def test_a_folder_is_read_in_order_skipping_hidden_files(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text(SERVICE.replace("name: api", "name: b"))
    (tmp_path / "a.yml").write_text(SERVICE.replace("name: api", "name: a"))
    (tmp_path / ".hidden.yaml").write_text("kind: Nope\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text(
        '{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"}, '
        '"spec": {"ports": [{"port": 1}]}}')
    assert [obj.name for obj in load_path(tmp_path)] == ["a", "b", "c"]


def test_a_secret_is_refused_only_where_the_api_server_refuses_it() -> None:
    """ValidateSecret: data is base64, a kubernetes.io/tls Secret has tls.crt and tls.key.
    Anything else is stored (an Opaque Secret, a certificate that is not PEM) and reported
    where it is referenced."""
    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n" \
           "data: {tls.crt: '!!notbase64'}\n"
    assert error_of(text).field == "data.tls.crt"
    keyless = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\n" \
              "stringData: {tls.crt: x}\n"
    assert "needs 'tls.key'" in error_of(keyless).message
    [opaque] = load_objects("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {}\n")
    assert opaque.spec.type == "Opaque"
    assert opaque.spec.problem == "type 'Opaque' is not kubernetes.io/tls"
    [hello] = load_objects("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"
                           "type: kubernetes.io/tls\n"
                           "stringData: {tls.crt: hello, tls.key: hello}\n")
    assert hello.spec.problem == "tls.crt is not a PEM X.509 certificate"
    assert "hello" not in repr(hello.spec)


def test_a_stream_has_a_total_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.mesh import yamldoc
    monkeypatch.setattr(yamldoc, "MAX_STREAM_NODES", 40)
    error = error_of("---\n".join([SERVICE] * 5))
    assert "more than 40 values in one stream" in error.message


def _tlsroute(api_version: str, hostnames: str) -> str:
    return f"""apiVersion: gateway.networking.k8s.io/{api_version}
kind: TLSRoute
metadata: {{name: vault}}
spec:
  parentRefs: [{{name: edge}}]
  {hostnames}
  rules: [{{backendRefs: [{{name: vault, port: 8200}}]}}]
"""


def test_tlsroute_is_served_as_v1_with_its_own_rules_and_as_v1alpha2() -> None:
    """apis/v1/tlsroute_types.go: v1 requires 1..1024 hostnames; v1alpha2 took none."""
    (route,) = load_objects(_tlsroute("v1", "hostnames: [vault.example.com]"))
    assert route.api_version.endswith("/v1") and route.spec.hostnames == ("vault.example.com",)
    (old,) = load_objects(_tlsroute("v1alpha2", ""))
    assert old.spec.hostnames == ()
    with pytest.raises(MeshError, match=r"spec\.hostnames.*required"):
        load_objects(_tlsroute("v1", ""))
    with pytest.raises(MeshError, match=r"spec\.hostnames.*at least 1"):
        load_objects(_tlsroute("v1", "hostnames: []"))
