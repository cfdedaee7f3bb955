"""The sidecar configured entirely over ADS by `pointsman controlplane`: LDS + CDS + EDS, a
live endpoint change applied without dropping an established connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.proxy.helpers import TaggedServer, endpoint, read_line, tcp_proxy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port, wait_for_port
from tests.support.processes import ManagedProcess, python_argv

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLA = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
HTTP2_OPTIONS = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def ads_bootstrap(xds_port: int) -> dict[str, Any]:
    return {
        "node": {"id": "sidecar-1", "cluster": "web"},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": HTTP2_OPTIONS,
            "load_assignment": {"cluster_name": "xds", "endpoints": [
                {"lb_endpoints": [endpoint(xds_port)]}]},
        }]},
    }


def resources(listen_port: int, backend_port: int, version: str) -> dict[str, Any]:
    return {"version_info": version, "resources": [
        {"@type": CLUSTER, "name": "backend", "type": "EDS", "connect_timeout": "1s",
         "eds_cluster_config": {"eds_config": {"ads": {}, "resource_api_version": "V3"}}},
        {"@type": CLA, "cluster_name": "backend",
         "endpoints": [{"lb_endpoints": [endpoint(backend_port)]}]},
        {"@type": LISTENER, "name": "l4",
         "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen_port}},
         "filter_chains": [{"filters": [tcp_proxy("backend")]}]},
    ]}


@pytest.fixture
def backends() -> Iterator[list[TaggedServer]]:
    servers = [TaggedServer("a"), TaggedServer("b")]
    yield servers
    for server in servers:
        server.stop()


@pytest.mark.parametrize("concurrency", [1, 2])
def test_configured_over_ads_and_live_endpoint_change(tmp_path: Path,
                                                       backends: list[TaggedServer],
                                                       concurrency: int) -> None:
    xds_port, listen_port = free_port(), free_port()
    config = tmp_path / "resources.json"
    config.write_text(json.dumps(resources(listen_port, backends[0].port, "1")))
    with ManagedProcess(python_argv("-m", "controlplane", "--resources", str(config),
                                    "--listen", f"127.0.0.1:{xds_port}",
                                    "--poll-interval", "0.1"), name="controlplane") as cp:
        cp.wait_until(lambda: _listening(xds_port), 30, "listening")
        with Pointsman(ads_bootstrap(xds_port),
                       extra_args=("--concurrency", str(concurrency))) as proxy:
            proxy.wait_ready()
            established = socket.create_connection(("127.0.0.1", listen_port), timeout=5)
            with established:
                assert read_line(established) == "a"
                config.write_text(json.dumps(resources(listen_port, backends[1].port, "2")))
                proxy.wait_until(lambda: _backend_of(listen_port) == "b", 30, "moved to b")
                # The connection made before the change still works, to its old backend.
                established.sendall(b"still here")
                assert established.recv(100) == b"still here"
            dump = json.loads(proxy.admin("/config_dump")[1])
            endpoints = next(c for c in dump["configs"] if "Endpoints" in c["@type"])
            [backend] = endpoints["dynamic_endpoint_configs"]
            assert backend["name"] == "backend" and backend["version_info"]
            assert backend["endpoint_config"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
                "address"]["socket_address"]["port_value"] == backends[1].port
            listeners = next(c for c in dump["configs"] if "Listeners" in c["@type"])
            assert [item["name"] for item in listeners["dynamic_listeners"]] == ["l4"]
            assert proxy.stat("cluster_manager.cds.update_success") >= 1
            assert proxy.stat("listener_manager.lds.update_success") >= 1
            assert proxy.stat("control_plane.connected_state") == 1


def _listening(port: int) -> bool:
    try:
        wait_for_port(port, timeout=0.1)
    except TimeoutError:
        return False
    return True


def _backend_of(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return read_line(sock)


def listener_only(listen_port: int, cluster_ports: dict[str, int], target: str | None,
                  version: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    for name, port in cluster_ports.items():
        items.append({"@type": CLUSTER, "name": name, "type": "STATIC", "connect_timeout": "1s",
                      "load_assignment": {"cluster_name": name, "endpoints": [
                          {"lb_endpoints": [endpoint(port)]}]}})
    if target is not None:
        items.append({"@type": LISTENER, "name": "l4", "address": {"socket_address": {
            "address": "127.0.0.1", "port_value": listen_port}},
            "filter_chains": [{"filters": [tcp_proxy(target)]}]})
    return {"version_info": version, "resources": items}


def test_listener_update_and_removal_drain(tmp_path: Path,
                                           backends: list[TaggedServer]) -> None:
    xds_port, listen_port = free_port(), free_port()
    ports = {"a": backends[0].port, "b": backends[1].port}
    config = tmp_path / "resources.json"
    config.write_text(json.dumps(listener_only(listen_port, ports, "a", "1")))
    with ManagedProcess(python_argv("-m", "controlplane", "--resources", str(config),
                                    "--listen", f"127.0.0.1:{xds_port}",
                                    "--poll-interval", "0.1"), name="controlplane") as cp:
        cp.wait_until(lambda: _listening(xds_port), 30, "listening")
        with Pointsman(ads_bootstrap(xds_port), extra_args=("--drain-time-s", "2")) as proxy:
            proxy.wait_ready()
            old = socket.create_connection(("127.0.0.1", listen_port), timeout=10)
            with old:
                assert read_line(old) == "a"
                # Update: new connections use the new chain, the old one keeps working.
                config.write_text(json.dumps(listener_only(listen_port, ports, "b", "2")))
                proxy.wait_until(lambda: _backend_of(listen_port) == "b", 30, "updated")
                old.sendall(b"ping")
                assert old.recv(10) == b"ping"
                assert proxy.stat("listener_manager.listener_modified") == 1
                # ... until the drain time ends it.
                assert old.recv(10) == b""
            # Removal: the port stops accepting.
            config.write_text(json.dumps(listener_only(listen_port, ports, None, "3")))
            proxy.wait_until(lambda: not _listening(listen_port), 30, "removed")
            assert proxy.stat("listener_manager.listener_removed") == 1
            assert proxy.stat("listener_manager.total_listeners_active") == 0


def test_ads_over_mutual_tls(tmp_path: Path, backends: list[TaggedServer]) -> None:
    from tests.integration.proxy.helpers import UPSTREAM_TLS, tls_files

    files = tls_files(tmp_path, ["xds.test", "sidecar.test"])
    xds_port, listen_port = free_port(), free_port()
    config = tmp_path / "resources.json"
    config.write_text(json.dumps(resources(listen_port, backends[0].port, "1")))
    cert, key = files["xds.test"]
    bootstrap = ads_bootstrap(xds_port)
    client_cert, client_key = files["sidecar.test"]
    bootstrap["static_resources"]["clusters"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": UPSTREAM_TLS, "sni": "xds.test", "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": str(client_cert)},
                                      "private_key": {"filename": str(client_key)}}],
                "validation_context": {"trusted_ca": {"filename": str(files["ca"][0])}}}}}
    with ManagedProcess(python_argv("-m", "controlplane", "--resources", str(config),
                                    "--listen", f"127.0.0.1:{xds_port}",
                                    "--tls-cert", str(cert), "--tls-key", str(key),
                                    "--client-ca", str(files["ca"][0])),
                        name="controlplane") as cp:
        cp.wait_until(lambda: _listening(xds_port), 30, "listening")
        with Pointsman(bootstrap) as proxy:
            proxy.wait_ready()
            assert _backend_of(listen_port) == "a"
