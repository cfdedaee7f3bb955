"""grpcio's own xDS client configured by our control plane: `xds:///greeter` resolved through
LDS (API listener) -> RDS -> CDS -> EDS, round robin over three grpcio backends, and an endpoint
removed from the file stops receiving calls."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from protos.registry import CLUSTER, LISTENER, ROUTE_CONFIGURATION
from tests.conformance.controlplane.support import ControlPlane, write_resources
from tests.support.processes import ManagedProcess, python_argv
from tests.unit.controlplane.builders import ADS, HCM, ROUTER, endpoints

pytestmark = pytest.mark.conformance
CLIENT = Path(__file__).with_name("grpc_xds_client.py")


@contextmanager
def grpc_backend(name: str) -> Iterator[int]:
    """A grpcio server answering /pointsman.test.Who/Am with its name."""
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: name.encode())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("pointsman.test.Who", {"Am": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None).wait()


def greeter_resources(*ports: int) -> list[dict[str, Any]]:
    """What gRPC's xDS resolver needs: an API listener with RDS, routes, an EDS cluster."""
    return [
        {"@type": LISTENER, "name": "greeter",
         "api_listener": {"api_listener": {
             "@type": HCM, "stat_prefix": "greeter",
             "rds": {"route_config_name": "greeter-routes", "config_source": ADS},
             "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}]}}},
        {"@type": ROUTE_CONFIGURATION, "name": "greeter-routes", "virtual_hosts": [{
            "name": "greeter", "domains": ["greeter"],
            "routes": [{"match": {"prefix": ""}, "route": {"cluster": "greeter-backends"}}]}]},
        {"@type": CLUSTER, "name": "greeter-backends", "type": "EDS", "lb_policy": "ROUND_ROBIN",
         "eds_cluster_config": {"eds_config": ADS}},
        weighted_locality(endpoints("greeter-backends", *ports)),
    ]


def weighted_locality(assignment: dict[str, Any]) -> dict[str, Any]:
    # gRPC's xDS client ignores localities without a load_balancing_weight (gRFC A27).
    assignment["endpoints"][0].update(locality={"zone": "z1"}, load_balancing_weight=1)
    return assignment


def answers(client: ManagedProcess) -> list[str]:
    return client.output().splitlines()


def test_grpc_xds_client_round_robins_and_honours_endpoint_removal(tmp_path: Path) -> None:
    config = tmp_path / "greeter.yaml"
    bootstrap = tmp_path / "bootstrap.json"
    with grpc_backend("b1") as p1, grpc_backend("b2") as p2, grpc_backend("b3") as p3:
        write_resources(config, greeter_resources(p1, p2, p3))
        with ControlPlane(config) as control:
            control.wait_ready()
            bootstrap.write_text(json.dumps({
                "xds_servers": [{"server_uri": f"127.0.0.1:{control.port}",
                                 "channel_creds": [{"type": "insecure"}],
                                 "server_features": ["xds_v3"]}],
                "node": {"id": "grpc-client-1", "cluster": "grpc-clients"}}))
            with ManagedProcess(python_argv(str(CLIENT), "xds:///greeter"), name="grpc-xds",
                                env={"GRPC_XDS_BOOTSTRAP": str(bootstrap)}) as client:
                client.wait_until(lambda: len(answers(client)) >= 60 and set(
                    answers(client)[-30:]) == {"b1", "b2", "b3"}, 60, "calling all backends")
                [node] = control.status()["nodes"]
                assert (node["id"], node["cluster"]) == ("grpc-client-1", "grpc-clients")
                assert node["subscriptions"]["listener"]["names"] == ["greeter"]
                spread = Counter(answers(client)[-30:])
                assert max(spread.values()) - min(spread.values()) <= 2, spread  # round robin

                write_resources(config, greeter_resources(p1, p2))
                seen = len(answers(client))
                client.wait_until(lambda: len(answers(client)) > seen + 40 and set(
                    answers(client)[-40:]) == {"b1", "b2"}, 30, "b3 removed")
                assert not any(line.startswith("ERROR") for line in answers(client)[-40:])

            # The client process is gone: its stream closes and leaves the status page.
            control.wait_until(lambda: not control.status()["nodes"], 15, "stream closed")


def test_grpc_xds_client_target_that_appears_later(tmp_path: Path) -> None:
    """The client asks for a listener before it exists (the empty LDS answer says so); when the
    file gains it, it is pushed and calls start to succeed."""
    config = tmp_path / "greeter.yaml"
    bootstrap = tmp_path / "bootstrap.json"
    with grpc_backend("late") as port:
        write_resources(config, [])
        with ControlPlane(config) as control:
            control.wait_ready()
            bootstrap.write_text(json.dumps({
                "xds_servers": [{"server_uri": f"127.0.0.1:{control.port}",
                                 "channel_creds": [{"type": "insecure"}],
                                 "server_features": ["xds_v3"]}],
                "node": {"id": "grpc-client-2", "cluster": "grpc-clients"}}))
            with ManagedProcess(python_argv(str(CLIENT), "xds:///greeter"), name="grpc-xds-late",
                                env={"GRPC_XDS_BOOTSTRAP": str(bootstrap)}) as client:
                client.wait_until(lambda: any(line.startswith("ERROR")
                                              for line in answers(client)), 30, "failing first")
                write_resources(config, greeter_resources(port))
                client.wait_until(lambda: answers(client)[-1:] == ["late"], 30, "calls succeed")
