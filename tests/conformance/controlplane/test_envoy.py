"""Real Envoy (ADS bootstrap) configured by our control plane: LDS+RDS, EDS clusters, traffic to
real local backends, a live file edit re-routing traffic, and what the admin endpoint shows."""

from __future__ import annotations

import shutil
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.controlplane.support import ControlPlane, http_backend, write_resources
from tests.integration.controlplane.certificates import make_certificates
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.processes import http_get
from tests.unit.controlplane.builders import ADS, cluster, endpoints, listener, route

pytestmark = pytest.mark.conformance


def ads_bootstrap(xds_port: int, api_type: str = "GRPC") -> dict[str, Any]:
    """ADS bootstrap; api_type GRPC is state of the world, DELTA_GRPC incremental."""
    return {
        "node": {"id": "envoy-1", "cluster": "conformance"},
        "dynamic_resources": {
            "ads_config": {"api_type": api_type, "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
            "cds_config": ADS, "lds_config": ADS},
        "static_resources": {"clusters": [{
            "name": "xds", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                             "HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": xds_port}}}}]}]}}]},
    }


def get_body(port: int, path: str) -> str:
    status, body = http_get(f"http://127.0.0.1:{port}{path}")
    return body if status == 200 else f"<{status}>"


def has_cluster(envoy: Envoy, name: str) -> bool:
    return any(line.startswith(f"{name}::") for line in envoy.admin("/clusters")[1].splitlines())


def wait_for_body(envoy: Envoy, port: int, path: str, expected: str, timeout: float) -> float:
    start = time.monotonic()
    envoy.wait_until(lambda: get_body(port, path) == expected, timeout, f"{path} -> {expected}")
    return time.monotonic() - start


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
def test_envoy_routes_by_ads_and_follows_a_file_edit(tmp_path: Path, api_type: str) -> None:
    config = tmp_path / "mesh.yaml"
    listen = free_port()
    with http_backend("web-1") as web1, http_backend("web-2") as web2, \
            http_backend("api-1") as api1:
        write_resources(config, [cluster("web"), endpoints("web", web1),
                                 listener("http", "main", listen), route("main", "web")])
        with ControlPlane(config) as control:
            control.wait_ready()
            with Envoy(ads_bootstrap(control.port, api_type), name="envoy-ads") as envoy:
                envoy.wait_ready()
                wait_for_body(envoy, listen, "/web", "web-1", 30)

                # Live edit: web moves to a new backend, a new cluster "api" and its route appear.
                write_resources(config, [cluster("web"), endpoints("web", web2),
                                         cluster("api"), endpoints("api", api1),
                                         listener("http", "main", listen),
                                         route("main", "web", "api")])
                took = wait_for_body(envoy, listen, "/api", "api-1", 15)
                assert get_body(listen, "/web") == "web-2"
                assert took < 10, f"edit took {took:.1f}s to reach Envoy"

                # Only the cluster changes: Envoy warms it and waits for its endpoints (forever:
                # initial_fetch_timeout 0s), so the server must answer the EDS re-request.
                updates = envoy.stat("cluster_manager.cds.update_success")
                patient = cluster("web", "2s")
                patient["eds_cluster_config"]["eds_config"] = {**ADS,
                                                               "initial_fetch_timeout": "0s"}
                write_resources(config, [patient, endpoints("web", web2),
                                         cluster("api"), endpoints("api", api1),
                                         listener("http", "main", listen),
                                         route("main", "web", "api")])
                envoy.wait_until(lambda: envoy.stat("cluster_manager.cds.update_success")
                                 > updates, 15, "cluster update applied")
                envoy.wait_until(lambda: envoy.stat("cluster_manager.warming_clusters") == 0,
                                 20, "cluster warmed")
                assert get_body(listen, "/web") == "web-2"

                # Remove "api" again: its route goes and Envoy drops the cluster only after.
                write_resources(config, [patient, endpoints("web", web2),
                                         listener("http", "main", listen), route("main", "web")])
                wait_for_body(envoy, listen, "/api", "<404>", 15)
                envoy.wait_until(lambda: not has_cluster(envoy, "api"), 15,
                                 "cluster api removed")

                # An invalid edit is refused; the last good snapshot keeps being served.
                write_resources(config, [cluster("web"), endpoints("web", web2),
                                         listener("http", "main", listen),
                                         route("main", "web", "ghost")])
                control.wait_until(lambda: control.status()["last_config_error"] is not None,
                                   10, "config error reported")
                assert "ghost" in control.status()["last_config_error"]
                assert get_body(listen, "/web") == "web-2"

                [node] = [item for item in control.status()["nodes"] if item["id"] == "envoy-1"]
                assert node["cluster"] == "conformance"
                subscriptions = node["subscriptions"]
                assert set(subscriptions) >= {"cluster", "endpoint", "listener", "route"}
                assert subscriptions["cluster"]["wildcard"]
                assert subscriptions["route"]["names"] == ["main"]
                for state in subscriptions.values():
                    assert state["acked_version"] == state["sent_version"]
                    assert state["last_nack"] is None
                metrics = control.admin("/metrics")[1]
                assert "pointsman_xds_connected_streams 1" in metrics
                assert 'pointsman_xds_nacks_total{type="cluster"}' not in metrics


def regex_route(name: str, cluster_name: str, pattern: str) -> dict[str, Any]:
    config = route(name, cluster_name)
    config["virtual_hosts"][0]["routes"].insert(0, {
        "match": {"safe_regex": {"regex": pattern}}, "route": {"cluster": cluster_name}})
    return config


def test_envoy_nack_is_recorded_and_the_next_change_delivered(tmp_path: Path) -> None:
    """A regex only RE2 can judge passes our validation; Envoy refuses it (NACK). The refusal
    shows in /status and /metrics, Envoy keeps routing with the last good routes, and the next
    change is delivered."""
    config = tmp_path / "mesh.yaml"
    listen = free_port()
    with http_backend("web-1") as web1, http_backend("web-2") as web2:
        good = [cluster("web"), endpoints("web", web1), listener("http", "main", listen)]
        write_resources(config, [*good, route("main", "web")])
        with ControlPlane(config) as control:
            control.wait_ready()
            with Envoy(ads_bootstrap(control.port), name="envoy-nack") as envoy:
                envoy.wait_ready()
                wait_for_body(envoy, listen, "/web", "web-1", 30)

                write_resources(config, [*good, regex_route("main", "web", "((")])
                control.wait_until(lambda: route_state(control)["last_nack"] is not None, 15,
                                   "NACK recorded")
                state = route_state(control)
                assert state["last_nack"]["version"] == state["sent_version"]
                assert state["acked_version"] != state["sent_version"]
                assert "missing )" in state["last_nack"]["message"]  # RE2: "missing ): (("
                assert 'pointsman_xds_nacks_total{type="route"} 1' in control.admin("/metrics")[1]
                assert get_body(listen, "/web") == "web-1"  # the last good routes still serve

                write_resources(config, [cluster("web"), endpoints("web", web2),
                                         listener("http", "main", listen),
                                         regex_route("main", "web", "^/w.b$")])
                wait_for_body(envoy, listen, "/web", "web-2", 15)
                control.wait_until(lambda: route_state(control)["acked_version"] == route_state(
                    control)["sent_version"], 15, "fixed routes ACKed")
                # The NACK is kept for the record, marked superseded by the ACKed version.
                state = route_state(control)
                nack = state["last_nack"]
                assert "missing )" in nack["message"]
                assert nack["superseded"]["acked_version"] == state["acked_version"]
                assert nack["at"] <= nack["superseded"]["at"] <= time.time()

                # /status?node= answers 404 for a node with no open stream.
                assert control.admin("/status?node=envoy-1")[0] == 200
                status, body = control.admin("/status?node=nobody")
                assert status == 404 and "nobody" in body


def test_node_matching_no_group_is_a_warning(tmp_path: Path) -> None:
    """With node groups in PATH, an Envoy whose id and cluster match none of them gets the
    shared resources only: a warning in the log and on its /status entry, not silence."""
    listen = free_port()
    with http_backend("web-1") as web1:
        write_resources(tmp_path / "shared.yaml", [cluster("web"), endpoints("web", web1),
                                                   listener("http", "main", listen),
                                                   route("main", "web")])
        (tmp_path / "payments").mkdir()
        write_resources(tmp_path / "payments" / "extra.yaml", [cluster("ledger"),
                                                               endpoints("ledger", web1)])
        with ControlPlane(tmp_path) as control:
            control.wait_ready()
            with Envoy(ads_bootstrap(control.port), name="envoy-ungrouped") as envoy:
                envoy.wait_ready()
                wait_for_body(envoy, listen, "/web", "web-1", 30)  # the shared set is served
                [node] = control.status()["nodes"]
                assert node["group"] == "(shared)"
                assert node["warning"] == ("node id 'envoy-1' and cluster 'conformance' match "
                                           "no resource group (payments): it gets the shared "
                                           "resources only")
                control.wait_until(lambda: '"event": "node_matches_no_group"' in
                                   control.output(), 10, "warning logged")
                [line] = [line for line in control.output().splitlines()
                          if "node_matches_no_group" in line]
                assert '"level": "warning"' in line and '"node": "envoy-1"' in line


def route_state(control: ControlPlane) -> dict[str, Any]:
    [node] = control.status()["nodes"]
    return dict(node["subscriptions"]["route"])


SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
DOWNSTREAM_TLS = ("type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                  "DownstreamTlsContext")


def tls_listener(name: str, route_name: str, port: int, secret: str) -> dict[str, Any]:
    config = listener(name, route_name, port)
    config["filter_chains"][0]["transport_socket"] = {
        "name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": DOWNSTREAM_TLS, "common_tls_context": {
                "tls_certificate_sds_secret_configs": [{"name": secret, "sds_config": ADS}]}}}
    return config


def certificate_secret(name: str, files: dict[str, bytes]) -> dict[str, Any]:
    return {"@type": SECRET, "name": name, "tls_certificate": {
        "certificate_chain": {"inline_string": files["server.pem"].decode()},
        "private_key": {"inline_string": files["server.key"].decode()}}}


def https_body(port: int, ca: Path) -> str:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/web", context=context,
                                    timeout=2) as response:
            return str(response.read().decode())
    except OSError as error:
        return f"<{error}>"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_envoy_terminates_tls_with_a_certificate_sent_over_sds(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    config = tmp_path / "mesh.yaml"
    listen = free_port()
    with http_backend("web-tls") as web:
        write_resources(config, [cluster("web"), endpoints("web", web),
                                 tls_listener("https", "main", listen, "server-cert"),
                                 route("main", "web"), certificate_secret("server-cert", files)])
        with ControlPlane(config) as control:
            control.wait_ready()
            with Envoy(ads_bootstrap(control.port), name="envoy-sds") as envoy:
                envoy.wait_ready()
                envoy.wait_until(lambda: https_body(listen, tmp_path / "ca.pem") == "web-tls",
                                 30, "HTTPS through the SDS certificate")
                [node] = control.status()["nodes"]
                secret = node["subscriptions"]["secret"]
                assert secret["names"] == ["server-cert"]
                assert secret["acked_version"] == secret["sent_version"]


UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_envoy_over_mutual_tls_to_the_control_plane(tmp_path: Path) -> None:
    make_certificates(tmp_path)
    config = tmp_path / "mesh.yaml"
    listen = free_port()
    with http_backend("web-mtls") as web:
        write_resources(config, [cluster("web"), endpoints("web", web),
                                 listener("http", "main", listen), route("main", "web")])
        tls = ("--tls-cert", str(tmp_path / "server.pem"), "--tls-key",
               str(tmp_path / "server.key"), "--client-ca", str(tmp_path / "ca.pem"))
        with ControlPlane(config, *tls) as control:
            control.wait_ready()
            bootstrap = ads_bootstrap(control.port)
            bootstrap["static_resources"]["clusters"][0]["transport_socket"] = {
                "name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": UPSTREAM_TLS, "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": {"filename": str(tmp_path / "client.pem")},
                            "private_key": {"filename": str(tmp_path / "client.key")}}],
                        "validation_context": {
                            "trusted_ca": {"filename": str(tmp_path / "ca.pem")},
                            "match_typed_subject_alt_names": [{
                                "san_type": "IP_ADDRESS",
                                "matcher": {"exact": "127.0.0.1"}}]}}}}
            with Envoy(bootstrap, name="envoy-mtls") as envoy:
                envoy.wait_ready()
                wait_for_body(envoy, listen, "/web", "web-mtls", 30)
