"""The gateway runner's pieces that need no processes: the suite's placeholders, Go's
certificate name rules, request ids, the TCP echo protocol and the gRPC echo messages."""

from __future__ import annotations

from typing import Any

from tests.conformance.gateway_api import grpcecho
from tests.conformance.gateway_api.echo import tcp_answer
from tests.conformance.gateway_api.expectations import (
    ExpectedRequest,
    ExpectedResponse,
    Request,
    Response,
)
from tests.conformance.gateway_api.gateway_certs import go_hostname_match
from tests.conformance.gateway_api.gateway_runner import (
    CONTROLLER_NAME,
    GATEWAY_CLASS,
    SUPPORTED_FEATURES,
    UNSUPPORTED_FEATURES,
    Context,
    GatewayHarness,
    _ca_refs,
    _config_map_ca,
    applicable,
    mirror_count_mismatch,
    retry_request,
    substitute,
    with_request_id,
)
from tests.conformance.gateway_api.gateway_steps import SAME_NAMESPACE, RetryProbe
from tests.conformance.gateway_api.gateway_tests import GATEWAY_CONFORMANCE_TESTS
from tests.conformance.gateway_api.status import NN, GatewayRef, RoutesAccepted, Update


def test_placeholders_are_substituted_and_workloads_set_apart() -> None:
    text = """
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: "{GATEWAY_CONTROLLER_NAME}"}
---
kind: Gateway
metadata: {name: g}
spec: {gatewayClassName: "{GATEWAY_CLASS_NAME}"}
---
kind: Deployment
metadata: {name: d}
---
kind: ConfigMap
metadata: {name: coredns}
"""
    assert substitute("{GATEWAY_CLASS_NAME} {GATEWAY_CONTROLLER_NAME}") == \
        f"{GATEWAY_CLASS} {CONTROLLER_NAME}"
    keep, deployments = applicable(text)
    assert [item["kind"] for item in keep] == ["GatewayClass", "Gateway"]
    assert keep[0]["spec"]["controllerName"] == CONTROLLER_NAME
    assert keep[1]["spec"]["gatewayClassName"] == GATEWAY_CLASS
    assert [item["metadata"]["name"] for item in deployments] == ["d"]


def test_go_hostname_rules() -> None:
    """crypto/x509: a wildcard is one whole leftmost label; `*` alone matches no dotted name."""
    assert go_hostname_match("*.org", "example.org")
    assert go_hostname_match("*.wildcard.org", "Foo.Wildcard.org.")
    assert not go_hostname_match("*.wildcard.org", "a.b.wildcard.org")
    assert not go_hostname_match("*", "example.org")
    assert go_hostname_match("example.org", "example.org")


def test_request_id_goes_to_the_request_and_the_expected_path() -> None:
    case = ExpectedResponse(request=Request(path="/mirror?a=b"),
                            expected_request=ExpectedRequest(path="/mirror?a=b"))
    found = with_request_id(case)
    assert found.request.path.startswith("/mirror?a=b&gateway-api-conformance-request-id=")
    assert found.expected_request is not None
    assert found.expected_request.path == found.request.path
    assert with_request_id(case).request.path != found.request.path  # a fresh id each time


def test_tcp_echo_answers_as_echo_basic() -> None:
    assertions = {"namespace": "ns", "pod": "tcp-backend-x-y", "isTLS": True}
    assert tcp_answer(b"PING\n", assertions) == b"PONG\n"
    assert tcp_answer(b"IS_TLS\n", assertions) == b"true\n"
    assert tcp_answer(b"TEST\n", assertions) == (
        b'{"namespace": "ns", "pod": "tcp-backend-x-y", "isTLS": true}\n')
    assert tcp_answer(b"HELLO\n", assertions) is None


def test_grpc_echo_response_round_trips() -> None:
    data = grpcecho.echo_response(grpcecho.full_method("EchoTwo"),
                                  [(":authority", "gw"), ("x-a", "1")], "ns", "pod-1")
    response = grpcecho.EchoResponse.FromString(data)
    assert response.assertions.fully_qualified_method == \
        "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/EchoTwo"
    assert response.assertions.authority == "gw"
    assert (response.assertions.context.namespace, response.assertions.context.pod) == (
        "ns", "pod-1")
    assert [(item.key, item.value) for item in response.assertions.headers][1] == ("x-a", "1")


def test_claimed_and_unclaimed_features_do_not_overlap() -> None:
    assert not SUPPORTED_FEATURES & set(UNSUPPORTED_FEATURES)


def test_a_retry_probe_sends_the_simulation_with_a_fresh_uuid() -> None:
    """assertConsistentRetryBehaviour: path?<values sorted by key, uuid among them>, a new uuid
    per probe, answered by infra-backend-v3 as the step says."""
    step = RetryProbe(SAME_NAMESPACE, "n", "/retry/x", {"succeedAfter": "2",
                                                         "responseCode": "500"},
                      Response(status_code=500))
    first, second = retry_request(step), retry_request(step)
    path, _, query = first.request.path.partition("?")
    names = [item.partition("=")[0] for item in query.split("&")]
    assert (path, names) == ("/retry/x", ["responseCode", "succeedAfter", "uuid"])
    assert first.request.path != second.request.path
    assert (first.response, first.backend) == (Response(status_code=500), "infra-backend-v3")


def test_a_mirror_count_must_lie_within_three_binomial_deviations() -> None:
    """testMirroredRequestsDistribution: 500 requests at 20 %: 100 +- 3 * sqrt(80) (26.8)."""
    assert mirror_count_mismatch("v2", 100, 20, 500, 3.0) is None
    assert mirror_count_mismatch("v2", 74, 20, 500, 3.0) is None
    assert mirror_count_mismatch("v2", 126, 20, 500, 3.0) is None
    found = mirror_count_mismatch("v2", 73, 20, 500, 3.0)
    assert found is not None and "between 73.2 and 126.8, got 73" in found
    assert mirror_count_mismatch("v2", 127, 20, 500, 3.0) is not None


def test_the_reconcile_subtest_patches_the_refs_and_restores_them() -> None:
    """backendtlspolicy.go's reconcile subtest: the refs point at a ConfigMap of the test's,
    the ConfigMap's ca.crt is emptied and set to a suite CA again, the old refs come back."""
    harness = GatewayHarness.__new__(GatewayHarness)  # no processes: only its CAs are read
    harness.cas = {NN("tls-checks-ca-certificate", "ns"): b"PEM"}
    context = Context(GATEWAY_CONFORMANCE_TESTS[0])
    original = [{"group": "", "kind": "ConfigMap", "name": "tls-checks-ca-certificate"}]
    policy = {"spec": {"validation": {"caCertificateRefs": list(original)}}}
    mine = [{"group": "", "kind": "ConfigMap", "name": "mine"}]
    name = NN("reconcile-test", "ns")
    assert _ca_refs(harness, context, Update("BackendTLSPolicy", name, {
        "spec.validation.caCertificateRefs": mine}), policy) is None
    assert policy["spec"]["validation"]["caCertificateRefs"] == mine
    config_map: dict[str, Any] = {"data": {"ca.crt": "PEM"}}
    for value, seen in (("", ""), ("{ca.crt of ConfigMap tls-checks-ca-certificate}", "PEM")):
        assert _config_map_ca(harness, context, Update("ConfigMap", NN("mine", "ns"), {
            "data.ca.crt": value}), config_map) is None
        assert config_map["data"]["ca.crt"] == seen
    assert _ca_refs(harness, context, Update("BackendTLSPolicy", name, {
        "spec.validation.caCertificateRefs": "{the original refs}"}), policy) is None
    assert policy["spec"]["validation"]["caCertificateRefs"] == original
    assert _ca_refs(harness, context, Update("BackendTLSPolicy", name, {
        "spec.validation.caCertificateRefs": "{the original refs}"}), policy) is not None


class _StoredHarness(GatewayHarness):
    """A harness whose `get` reads objects from a dict (kind, name) -> object: no processes."""

    def __init__(self, objects: dict[tuple[str, NN], dict[str, Any]]) -> None:
        self.objects = objects
        self.status_timeout = 0.01

    def get(self, kind: str, name: NN) -> dict[str, Any] | None:
        return self.objects.get((kind, name))


_READY = [{"type": kind, "status": "True", "reason": kind}
          for kind in ("ResolvedRefs", "Accepted", "Programmed")]


def _parented_route(kind: str) -> dict[str, Any]:
    return {"status": {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": kind, "name": "ls",
                      "namespace": "infra"},
        "controllerName": CONTROLLER_NAME,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}]}]}}


def test_routes_accepted_by_a_listener_set_check_its_parents_and_listeners() -> None:
    """RoutesAndParentMustBeAccepted(NewResourceRef(ListenerSet, ...)): the route's parent is
    the ListenerSet and the listeners checked are the ListenerSet's, which exists with no
    Gateway of its name."""
    step = RoutesAccepted(GatewayRef("ls", "infra", kind="ListenerSet"), (NN("r", "infra"),))
    listener_set = {"status": {"listeners": [{"name": "l", "conditions": _READY}]}}
    objects = {("ListenerSet", NN("ls", "infra")): listener_set,
               ("HTTPRoute", NN("r", "infra")): _parented_route("ListenerSet")}
    context = Context(GATEWAY_CONFORMANCE_TESTS[0])
    assert _StoredHarness(objects).routes_accepted(context, step) is None
    listener_set["status"]["listeners"][0]["conditions"] = [
        *_READY[:2], {"type": "Programmed", "status": "False", "reason": "Invalid"}]
    found = _StoredHarness(objects).routes_accepted(context, step)
    assert found is not None and "listener l" in found and "Programmed" in found
    listener_set["status"]["listeners"][0]["conditions"] = _READY
    objects[("HTTPRoute", NN("r", "infra"))] = _parented_route("Gateway")
    assert _StoredHarness(objects).routes_accepted(context, step) is not None
