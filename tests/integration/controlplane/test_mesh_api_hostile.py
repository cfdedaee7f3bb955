"""Hostile input on the management API, against the real control plane: bytes that are not
UTF-8, YAML nested past any sense, a request over the 32 MiB bound, more objects than one
apply may hold, and an object with a value too big for its field. Each gets exit status 1
and an error saying what is wrong (and where), the mesh stays as it was, the control plane
stays up, and xDS serving does not stall meanwhile: a client fetching clusters all along gets
every answer quickly."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from pathlib import Path

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.integration.controlplane.test_mesh import MESH
from tests.support.meshapi import ApiControlPlane, pointsman

FETCH = "/envoy.service.cluster.v3.ClusterDiscoveryService/FetchClusters"
STALL = 2.0  # seconds: generous, the machine is shared; a stall is the whole apply's time


class Fetcher(threading.Thread):
    """FetchClusters as the `front` sidecar, over and over; the slowest answer kept."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.slowest = 0.0
        self.answers = 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            fetch = channel.unary_unary(
                FETCH, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString)
            node = base_pb2.Node(id="front-1", cluster="front")
            node.metadata.update({"instance_ip": "127.96.1.1", "outbound_ip": "127.96.2.1"})
            request = discovery_pb2.DiscoveryRequest(node=node)
            while not self.done.is_set():
                start = time.monotonic()
                try:
                    fetch(request, timeout=30)
                    self.answers += 1
                except grpc.RpcError as error:
                    self.failures.append(str(error.code()))
                self.slowest = max(self.slowest, time.monotonic() - start)
                time.sleep(0.05)


def services(count: int) -> str:
    return "".join(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{index}}}\n"
                   f"spec: {{ports: [{{name: http, port: 80, appProtocol: http}}]}}\n"
                   for index in range(count))


def test_hostile_applies_are_refused_without_stalling_xds(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: deep}\nspec: "
                    + "[" * 200_000 + "]" * 200_000 + "\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: huge, annotations: "
                    "{a: '" + "x" * (40 * 1024 * 1024) + "'}}\nspec: {ports: []}\n")
    many = tmp_path / "many.yaml"
    many.write_text(services(20_001))
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        api = control_plane.api
        assert pointsman("apply", "-f", "-", server=api, stdin=MESH).returncode == 0
        fetcher = Fetcher(control_plane.port)
        fetcher.start()
        try:
            not_utf8 = pointsman("apply", "-f", "-", server=api,
                                 stdin=b"apiVersion: v1\nkind: Service\nmetadata: {name: \xff}\n")
            assert not_utf8.returncode == 1
            assert "<stdin>:3" in not_utf8.stderr and "not UTF-8" in not_utf8.stderr, \
                not_utf8.stderr

            nested = pointsman("apply", "-f", str(deep), server=api)
            assert nested.returncode == 1
            assert f"{deep}:4" in nested.stderr and "nest" in nested.stderr, nested.stderr

            too_big = pointsman("apply", "-f", str(huge), server=api)
            assert too_big.returncode == 1
            assert "RESOURCE_EXHAUSTED" in too_big.stderr, too_big.stderr

            too_many = pointsman("apply", "-f", str(many), server=api)
            assert too_many.returncode == 1
            assert "more than 20000" in too_many.stderr, too_many.stderr[:2000]
        finally:
            fetcher.done.set()
            fetcher.join()
        assert fetcher.answers > 0 and not fetcher.failures, fetcher.failures
        assert fetcher.slowest < STALL, f"xDS stalled {fetcher.slowest:.2f} s"
        listed = pointsman("get", "svc", "-o", "name", server=api)
        assert listed.returncode == 0
        assert listed.stdout.split() == ["service/api", "service/api-v2", "service/front"]
        assert control_plane.alive()  # still up


def routed_services(count: int) -> str:
    """`count` Services, each with an HTTPRoute splitting to the next one."""
    return "".join(
        f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{index}}}\n"
        f"spec: {{ports: [{{name: http, port: 80, appProtocol: http}}]}}\n"
        f"---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
        f"metadata: {{name: s{index}}}\nspec:\n"
        f"  parentRefs: [{{group: '', kind: Service, name: s{index}, port: 80}}]\n"
        f"  rules: [{{backendRefs: [{{name: s{index}, port: 80, weight: 9}}, "
        f"{{name: s{(index + 1) % count}, port: 80, weight: 1}}]}}]\n"
        for index in range(count))


def test_a_big_apply_is_compiled_off_the_event_loop(tmp_path: Path) -> None:
    """1,000 Services and routes applied while a sidecar fetches: the new mesh is resolved
    and compiled for it in a worker thread, then swapped in."""
    (tmp_path / "big.yaml").write_text(MESH + routed_services(1000))
    with ExitStack() as stack:
        control_plane = ApiControlPlane(f"file:{tmp_path / 'state'}")
        stack.enter_context(control_plane)
        control_plane.wait_ready()
        assert pointsman("apply", "-f", "-", server=control_plane.api, stdin=MESH
                         ).returncode == 0
        fetcher = Fetcher(control_plane.port)
        fetcher.start()
        try:
            time.sleep(0.5)
            applied = pointsman("apply", "-f", str(tmp_path / "big.yaml"),
                                server=control_plane.api)
            assert applied.returncode == 0, applied.stderr
            time.sleep(1.0)
        finally:
            fetcher.done.set()
            fetcher.join()
        assert fetcher.answers > 0 and not fetcher.failures, fetcher.failures
        assert fetcher.slowest < STALL, f"xDS stalled {fetcher.slowest:.2f} s"
