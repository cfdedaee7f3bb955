"""Two control-plane replicas sharing one mesh through etcd (Debian's etcd-server, started
here), with sidecars whose bootstrap lists both:

- a sidecar connected to one replica reaches a Service whose sidecars are connected to the
  other (endpoints are shared);
- an object applied through one replica reaches sidecars connected to the other within 2 s;
- `pointsman status` through either lists every proxy, with the replica serving it;
- when a replica is killed, its sidecars reconnect to the other while traffic keeps flowing,
  and a delta-xDS sidecar (Envoy, DELTA_GRPC) resumes without a resend: the resources it
  holds have the same versions on the other replica (initial_resource_versions), so at most
  the endpoint sets that moved meanwhile are sent.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.integration.controlplane.test_mesh import CANARY, MESH, eventually
from tests.support.etcd import EtcdServer, available
from tests.support.mesh import backend_of, request
from tests.support.meshapi import ApiControlPlane, pointsman, replicated_sidecar

pytestmark = pytest.mark.skipif(not available(), reason="needs etcd (Debian's etcd-server)")
NET = "127.97"


def proxies(api: str) -> dict[str, dict[str, Any]]:
    done = pointsman("status", "-o", "json", server=api)
    assert done.returncode in (0, 1), done.stderr
    return {item["nodeId"]: item for item in json.loads(done.stdout).get("proxies", [])}


def all_synced(item: dict[str, Any]) -> bool:
    return {entry["state"] for entry in item.get("types", [])} == {"SYNCED"}


def pushes_to(log: str, node: str) -> list[dict[str, Any]]:
    out = []
    for line in log.splitlines():
        if '"event": "push"' in line:
            entry = json.loads(line)
            if entry.get("node") == node:
                out.append(entry)
    return out


class Traffic(threading.Thread):
    """Requests through a sidecar until stopped; every status kept."""

    def __init__(self, via: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.via = via
        self.statuses: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                self.statuses.append(request(self.via, "/other", host="api", timeout=2)[0])
            except OSError:
                self.statuses.append(0)
            time.sleep(0.02)


def test_replicas_share_one_mesh(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text(MESH)
    (tmp_path / "canary.yaml").write_text(CANARY)
    with ExitStack() as stack:
        etcd = EtcdServer()
        stack.enter_context(etcd)
        etcd.wait_ready()
        replica_a = ApiControlPlane(etcd.url, "--replica-id", "a", "--lease-ttl", "3",
                                    name="cp-a")
        stack.enter_context(replica_a)
        replica_b = ApiControlPlane(etcd.url, "--replica-id", "b", "--lease-ttl", "3",
                                    name="cp-b")
        stack.enter_context(replica_b)
        replica_a.wait_ready()
        replica_b.wait_ready()
        assert pointsman("apply", "-f", str(tmp_path / "mesh.yaml"),
                         server=replica_a.api).returncode == 0
        # Envoy's round robin starts anywhere: see which replica it took, call it `doomed`.
        front_envoy = replicated_sidecar(stack, "envoy", [replica_a.port, replica_b.port],
                                         "front", 2, NET, delta=True)
        front_envoy.proxy.wait_ready()
        eventually(lambda: "front-2" in proxies(replica_a.api), "front-2 connected")
        on_a = proxies(replica_a.api)["front-2"]["controlPlane"] == "a"
        doomed, survivor = (replica_a, replica_b) if on_a else (replica_b, replica_a)
        first, other = [doomed.port, survivor.port], [survivor.port, doomed.port]
        front = replicated_sidecar(stack, "pointsman", first, "front", 1, NET)
        api = replicated_sidecar(stack, "pointsman", other, "api", 1, NET, app_port=9081)
        beta = replicated_sidecar(stack, "pointsman", other, "api-v2", 3, NET, app_port=9082)
        for member in (front, api, beta):
            member.proxy.wait_ready()
        via = (front.outbound_ip, 8080)
        gone, kept = ("a", "b") if on_a else ("b", "a")

        def backends(path: str, count: int = 6) -> set[str]:
            return {backend_of(request(via, path, host="api", timeout=2)[2])
                    for _ in range(count)}
        # front-1 is served by one replica, api-1 registered with the other: shared endpoints.
        eventually(lambda: backends("/beta") == {"api-1"}, "api-1 reached across replicas")
        listed = proxies(replica_a.api)
        assert {name: item["controlPlane"] for name, item in listed.items()} == {
            "front-1": gone, "front-2": gone, "api-1": kept, "api-v2-3": kept}

        applied = pointsman("apply", "-f", str(tmp_path / "canary.yaml"), server=survivor.api)
        assert applied.returncode == 0, applied.stderr
        start = time.monotonic()
        while backends("/beta/x", 2) != {"api-v2-3"}:
            assert time.monotonic() - start < 2.0, "not on the other replica's sidecar in 2 s"
            time.sleep(0.02)

        eventually(lambda: all(all_synced(item) for item in proxies(survivor.api).values()),
                   "every proxy SYNCED")
        traffic = Traffic(via)
        traffic.start()
        time.sleep(0.5)
        before = len(survivor.output())
        os.killpg(doomed.pid, signal.SIGKILL)

        def moved() -> bool:
            found = proxies(survivor.api)
            return all(found.get(node, {}).get("controlPlane") == kept
                       and all_synced(found[node]) for node in ("front-1", "front-2"))
        eventually(moved, "front-1 and front-2 served by b")
        time.sleep(0.5)
        traffic.done.set()
        traffic.join()
        assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses
        log = survivor.output()[before:]
        assert '"event": "connect"' in log and '"node": "front-2"' in log  # it came here
        # Delta: what front-2 holds has the same versions here; only endpoints may have moved
        # meanwhile (the killed replica's registrations expire with its lease), and its SVID:
        # each replica issues its own (the CA is shared through the store, SVIDs are not), so
        # the sidecar's `default` secret comes again now that its listeners use it (mTLS).
        first = sum(entry["resources"] for entry in pushes_to(doomed.output(), "front-2"))
        again = [entry for entry in pushes_to(log, "front-2") if entry["resources"]]
        kinds = {entry["type"] for entry in again}
        assert kinds <= {"endpoint", "secret"}, again  # EDS and SDS, by their short names
        endpoints_again = sum(entry["resources"] for entry in again if entry["type"] == "endpoint")
        assert endpoints_again <= 2 < first, (again, first)
        assert sum(entry["resources"] for entry in again if entry["type"] == "secret") <= 1
        assert sum(entry["resources"] for entry in pushes_to(log, "front-1")) > 0  # SotW

        eventually(lambda: [item["id"] for item in json.loads(pointsman(
            "status", "-o", "json", server=survivor.api).stdout)["controlPlanes"]] == [kept],
            "the killed replica's entry gone with its lease", timeout=15)
        deleted = pointsman("delete", "httproute", "canary", server=survivor.api)
        assert deleted.returncode == 0
        eventually(lambda: backends("/beta/x") == {"api-1"}, "the survivor serves front-1")
