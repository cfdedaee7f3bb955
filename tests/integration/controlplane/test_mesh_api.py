"""The mesh API end to end: `pointsman apply/get/delete` against `pointsman controlplane
--store file:...`, with Pointsman sidecars carrying the traffic. An apply re-routes traffic,
a refused apply (named by file and line, exit status 1) changes nothing while the last good
mesh keeps serving, the mesh survives a control-plane restart (the sidecars reconnect), and a
delete re-routes back."""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.integration.controlplane.test_mesh import CANARY, MESH, eventually
from tests.support.mesh import backend_of, request, start_sidecar
from tests.support.meshapi import ApiControlPlane, pointsman

NET = "127.95"
EXTRA = """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: lb}
spec:
  targetRefs: [{group: "", kind: Service, name: api}]
  loadBalancer: {type: RoundRobin}
---
apiVersion: v1
kind: Service
metadata: {name: legacy}
spec: {ports: [{name: http, port: 8090, appProtocol: http}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-1, labels: {kubernetes.io/service-name: legacy}}
addressType: IPv4
endpoints:
- addresses: [127.95.9.1]
- addresses: [127.95.9.2]
  conditions: {ready: false}
ports: [{name: http, port: 9090}]
"""


def test_apply_routes_traffic_and_survives_a_restart(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    (tmp_path / "canary.yaml").write_text(CANARY)
    bad = CANARY.replace("backendRefs: [{name: api-v2", "backendRef: [{name: api-v2")
    (tmp_path / "bad.yaml").write_text(bad)
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        api = control_plane.api
        applied = pointsman("apply", "-f", str(tmp_path / "mesh.yaml"), server=api)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.splitlines() == ["service/front created", "service/api created",
                                               "service/api-v2 created"]
        front = start_sidecar(stack, "pointsman", control_plane, "front", 1, NET)  # type: ignore
        api_sidecars = [start_sidecar(stack, "pointsman", control_plane, "api", index, NET,
                                      app_port=9081) for index in (1, 2)]  # type: ignore
        beta = start_sidecar(stack, "pointsman", control_plane, "api-v2", 3, NET,
                             app_port=9082)  # type: ignore
        for member in (front, *api_sidecars, beta):
            member.proxy.wait_ready()
        via = (front.outbound_ip, 8080)

        def backends(path: str, count: int = 8) -> set[str]:
            return {backend_of(request(via, path, host="api", timeout=2)[2])
                    for _ in range(count)}
        eventually(lambda: backends("/beta") == {"api-1", "api-2"}, "both api sidecars")

        routed = pointsman("apply", "-f", str(tmp_path / "canary.yaml"), server=api)
        assert routed.returncode == 0 and "httproute.gateway.networking.k8s.io/canary created" \
            in routed.stdout
        eventually(lambda: backends("/beta/x") == {"api-v2-3"}, "re-routed by the HTTPRoute")

        assert pointsman("apply", "-f", "-", server=api, stdin=EXTRA).returncode == 0
        described = pointsman("describe", "service", "api", "-o", "json", server=api)
        assert described.returncode == 0, described.stderr
        check_description(json.loads(described.stdout), api_sidecars, front)
        text = pointsman("describe", "svc", "legacy", server=api).stdout
        assert "127.95.9.2   9090   UNHEALTHY   plaintext     EndpointSlice legacy-1" in text, \
            text

        refused = pointsman("apply", "-f", str(tmp_path / "bad.yaml"), server=api)
        assert refused.returncode == 1
        assert f"{tmp_path / 'bad.yaml'}:9: HTTPRoute default/canary: spec.rules[0].backendRef: " \
               "error: unknown field (Invalid)" in refused.stderr
        assert backends("/beta/x") == {"api-v2-3"}  # the last good mesh still serves

        got = pointsman("get", "httproute", "canary", "-o", "json", server=api)
        data = json.loads(got.stdout)
        assert data["metadata"]["generation"] == 1
        assert {item["type"]: item["status"] for item in data["status"]["conditions"]}[
            "Accepted"] == "True"

        control_plane.stop()
        control_plane = control_plane.restarted()
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        listed = pointsman("get", "svc", server=api)
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [
            "api", "api-v2", "front", "legacy"]
        eventually(lambda: backends("/beta/x") == {"api-v2-3"}, "served after the restart")
        eventually(lambda: backends("/other") == {"api-1", "api-2"}, "endpoints re-registered")

        deleted = pointsman("delete", "-f", str(tmp_path / "canary.yaml"), server=api)
        assert (deleted.returncode, deleted.stdout.strip()) == (
            0, "httproute.gateway.networking.k8s.io/canary deleted")
        eventually(lambda: backends("/beta/x") == {"api-1", "api-2"}, "the route gone")
        missing = pointsman("get", "httproute", "canary", server=api)
        assert missing.returncode == 1 and "not found" in missing.stderr


def check_description(found: dict[str, Any], api_sidecars: list[Any], front: Any) -> None:
    assert [(item["name"], item["port"], item["protocol"]) for item in found["ports"]] == [
        ("http", 8080, "http")]
    assert sorted((item["address"], item["health"]) for item in found["endpoints"]) == sorted(
        (member.instance_ip, "HEALTHY") for member in api_sidecars)
    routes = {(item["route"]["name"], item["role"]) for item in found["routes"]}
    assert ("canary", "attached") in routes and ("canary", "backend") in routes
    assert [(item["policy"]["name"], item["fields"]) for item in found["policies"]] == [
        ("lb", ["loadBalancer"])]
    assert sorted(item["nodeId"] for item in found["serving"]) == ["api-1", "api-2"]
    callers = {item["nodeId"] for item in found["calling"]}
    assert "front-1" in callers and "api-1" not in callers
