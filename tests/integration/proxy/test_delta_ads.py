"""The sidecar over delta xDS (bootstrap `api_type: DELTA_GRPC`) against `pointsman
controlplane`: listeners, clusters, endpoints and routes added, updated and removed one
resource at a time, a NACK that changes nothing, and a reconnect to a restarted control plane
that sends only what changed (initial_resource_versions)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.http_backends import EchoBackend
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, http_get, python_argv
from tests.unit.controlplane.builders import cluster, endpoints, listener, route


def delta_bootstrap(xds_port: int) -> dict[str, Any]:
    bootstrap = ads_bootstrap(xds_port)
    bootstrap["dynamic_resources"]["ads_config"]["api_type"] = "DELTA_GRPC"
    return bootstrap


def write_resources(path: Path, resources: list[dict[str, Any]]) -> None:
    partial = path.with_name(f".{path.name}.tmp")  # rename: never a half-written file
    partial.write_text(yaml.safe_dump({"resources": resources}))
    partial.replace(path)


class ControlPlane(ManagedProcess):
    def __init__(self, resources: Path, port: int) -> None:
        self.port, self.admin_port = port, free_port()
        super().__init__(python_argv("-m", "controlplane", "--resources", str(resources),
                                     "--listen", f"127.0.0.1:{port}",
                                     "--admin", f"127.0.0.1:{self.admin_port}",
                                     "--poll-interval", "0.1"), name="controlplane")
        self.wait_until(lambda: http_get(f"http://127.0.0.1:{self.admin_port}/ready")[0] == 200,
                        30, "ready")
        wait_for_port(port)

    def node(self) -> dict[str, Any]:
        status = json.loads(http_get(f"http://127.0.0.1:{self.admin_port}/status")[1])
        [node] = [item for item in status["nodes"] if item["id"] == "sidecar-1"]
        return dict(node)

    def pushes(self) -> list[dict[str, Any]]:
        events = (json.loads(line) for line in self.output().splitlines()
                  if line.startswith("{"))
        return [event for event in events if event.get("event") == "push"]


@pytest.fixture
def backends() -> Iterator[dict[str, EchoBackend]]:
    started = {name: EchoBackend(name).start() for name in ("web-1", "web-2", "api-1")}
    yield started
    for backend in started.values():
        backend.stop()


def backend_of(port: int, path: str) -> str:
    try:
        status, body = http_get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except OSError:
        return "<closed>"
    return str(json.loads(body)["backend"]) if status == 200 else f"<{status}>"


def subscribed(control: ControlPlane) -> tuple[list[str], list[str]]:
    subscriptions = control.node()["subscriptions"]
    return subscriptions["endpoint"]["names"], subscriptions["route"]["names"]


def versions(proxy: Pointsman, kind: str, key: str) -> dict[str, str]:
    dump = json.loads(proxy.admin("/config_dump")[1])
    config = next(c for c in dump["configs"] if c["@type"].endswith(kind))
    return {item["name"]: item["version_info"] for item in config[key]}


@pytest.mark.parametrize("concurrency", [1, 2])
def test_delta_updates_nack_and_reconnect(tmp_path: Path, backends: dict[str, EchoBackend],
                                          concurrency: int) -> None:
    port = {name: backend.port for name, backend in backends.items()}
    xds, http, second = free_port(), free_port(), free_port()
    config = tmp_path / "mesh.yaml"
    base = [cluster("web"), listener("http", "main", http)]
    write_resources(config, [*base, endpoints("web", port["web-1"]), route("main", "web")])
    control = ControlPlane(config, xds)
    try:
        with Pointsman(delta_bootstrap(xds),
                       extra_args=("--concurrency", str(concurrency))) as proxy:
            proxy.wait_ready()
            assert backend_of(http, "/web") == "web-1"
            web_version = versions(proxy, "ClustersConfigDump", "dynamic_active_clusters")["web"]

            # Added and updated: endpoints of web, a cluster, a route, a second listener.
            write_resources(config, [
                *base, endpoints("web", port["web-2"]), route("main", "web", "api"),
                cluster("api"), endpoints("api", port["api-1"]),
                listener("second", "other", second), route("other", "api")])
            proxy.wait_until(lambda: backend_of(second, "/api") == "api-1", 30, "second")
            assert backend_of(http, "/api") == "api-1"
            assert backend_of(http, "/web") == "web-2"
            held = versions(proxy, "ClustersConfigDump", "dynamic_active_clusters")
            assert held["web"] == web_version != held["api"]  # per-resource versions
            assert subscribed(control) == (["api", "web"], ["main", "other"])

            # Removed: the listener, its routes, the cluster and its endpoints.
            write_resources(config, [*base, endpoints("web", port["web-2"]),
                                     route("main", "web")])
            proxy.wait_until(lambda: backend_of(second, "/api") == "<closed>", 30, "removed")
            proxy.wait_until(lambda: backend_of(http, "/api") == "<404>", 30, "route gone")
            # The cluster goes last: the control plane removes it once the listeners and
            # routes that named it are gone (make before break).
            proxy.wait_until(lambda: "api::" not in proxy.admin("/clusters")[1], 30,
                             "cluster gone")
            assert versions(proxy, "RoutesConfigDump", "dynamic_route_configs").keys() == {
                "main"}
            proxy.wait_until(lambda: subscribed(control) == (["web"], ["main"]), 30,
                             "unsubscribed from the endpoints of api and the routes 'other'")
            proxy.wait_until(lambda: proxy.stat("listener_manager.listener_removed")
                             == concurrency, 30, "listener removed by each worker")

            # A cluster the sidecar refuses: NACK naming the field, traffic unchanged.
            refused = {**cluster("web"), "lb_policy": "CLUSTER_PROVIDED"}
            write_resources(config, [refused, *base[1:], endpoints("web", port["web-2"]),
                                     route("main", "web")])
            proxy.wait_until(lambda: control.node()["subscriptions"]["cluster"]["last_nack"],
                             30, "NACK")
            assert proxy.stat("cluster_manager.cds.update_rejected") == 1
            nack = control.node()["subscriptions"]["cluster"]["last_nack"]
            assert "'web'" in nack["message"] and "lb_policy" in nack["message"]
            assert backend_of(http, "/web") == "web-2"
            assert versions(proxy, "ClustersConfigDump",
                            "dynamic_active_clusters")["web"] == web_version

            # Reconnect: the control plane restarts with web as before the NACK and one
            # endpoint moved meanwhile; the sidecar says what it holds (web at the version it
            # accepted, not the refused one), so only that ClusterLoadAssignment is sent.
            modified = proxy.stat("listener_manager.listener_modified")
            control.stop()
            write_resources(config, [*base, endpoints("web", port["web-1"]),
                                     route("main", "web")])
            control = ControlPlane(config, xds)
            proxy.wait_until(lambda: backend_of(http, "/web") == "web-1", 60, "reconnected")
            sent = {push["type"]: push["resources"] for push in control.pushes()}
            assert sent == {"cluster": 0, "endpoint": 1, "listener": 0, "route": 0}, sent
            # Nothing removed either: the sidecar claims none of what it no longer holds.
            assert not [push for push in control.pushes() if "removed" in push]
            assert proxy.stat("listener_manager.listener_modified") == modified
    finally:
        control.stop()
