"""One command: the control plane configures a real Envoy over ADS, then a live edit re-routes.

    .venv/bin/python examples/controlplane/basic/run.py

Starts two HTTP backends, `pointsman controlplane` serving resources.yaml (ports swapped for
free ones), and Envoy (.venv/bin/envoy) with an ADS bootstrap; sends requests, rewrites the file
so /api goes to the web backend, shows the change, prints the control plane's /status, stops.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: all probe sockets stay bound until every port is known
    (released one by one, the kernel may hand out the same port twice)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def backend(name: str) -> int:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = f"{name} answered {self.path}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])


def resources(ports: dict[str, int], listen: int, api_to: str) -> dict[str, Any]:
    document = yaml.safe_load((HERE / "resources.yaml").read_text())
    for item in document["resources"]:
        if item.get("cluster_name") in ports:
            address = item["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            address["socket_address"]["port_value"] = ports[item["cluster_name"]]
        if item.get("name") == "http":
            item["address"]["socket_address"]["port_value"] = listen
        if item.get("name") == "main":
            item["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = api_to
    return dict(document)


def bootstrap(xds: int, admin: int) -> dict[str, Any]:
    ads = {"ads": {}, "resource_api_version": "V3"}
    return {"node": {"id": "example-envoy", "cluster": "example"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": admin}}},
            "dynamic_resources": {"ads_config": {
                "api_type": "GRPC", "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}]},
                "cds_config": ads, "lds_config": ads},
            "static_resources": {"clusters": [{
                "name": "xds", "type": "STATIC", "connect_timeout": "1s",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                                 "HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}}},
                "load_assignment": {"cluster_name": "xds", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": xds}}}}]}]}}]}}


def get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return str(response.read().decode().strip())
    except OSError as error:
        return f"({error})"


def wait_for(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the example did not converge")
        time.sleep(0.1)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="pointsman-example-"))
    ports = {"web": backend("web"), "api": backend("api")}
    listen, xds, admin, envoy_admin = free_ports(4)
    config = work / "resources.yaml"
    config.write_text(yaml.safe_dump(resources(ports, listen, "api")))
    (work / "envoy.json").write_text(json.dumps(bootstrap(xds, envoy_admin)))
    envoy = shutil.which("envoy", path=str(BIN)) or "envoy"
    children = [
        subprocess.Popen([sys.executable, "-m", "controlplane", "--resources", str(config),
                          "--listen", f"127.0.0.1:{xds}", "--admin", f"127.0.0.1:{admin}",
                          "--log-level", "warning"], start_new_session=True),
        subprocess.Popen([envoy, "-c", str(work / "envoy.json"), "--log-level", "warn",
                          "--disable-hot-restart", "--base-id", str(xds)],
                         start_new_session=True),
    ]
    try:
        base = f"http://127.0.0.1:{listen}"
        wait_for(lambda: "answered" in get(f"{base}/api/hello"))
        print("before:", get(f"{base}/api/hello"), "|", get(f"{base}/"))
        config.write_text(yaml.safe_dump(resources(ports, listen, "web")))
        started = time.monotonic()
        wait_for(lambda: get(f"{base}/api/hello").startswith("web"))
        print(f"after the edit ({time.monotonic() - started:.2f} s):",
              get(f"{base}/api/hello"), "|", get(f"{base}/"))
        status = json.loads(get(f"http://127.0.0.1:{admin}/status"))
        for node in status["nodes"]:
            acked = {kind: sub["acked_version"] for kind, sub in node["subscriptions"].items()}
            print(f"node {node['id']} ({node['cluster']}) acked {acked}")
        return 0
    finally:
        for child in children:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait(10)


if __name__ == "__main__":
    sys.exit(main())
