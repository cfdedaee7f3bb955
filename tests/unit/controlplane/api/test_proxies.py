"""Proxy status and Programmed without sockets: a scripted sidecar on a SotW stream against
the mesh cache. A type is STALE until its push is ACKed, SYNCED after, STALE again when the
mesh moves on; a NACK makes it NACKED with the error and the objects that changed what it
refused; objects are Programmed (Pending before the ACK, Invalid after the NACK) for the
proxies compiled from them."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format
from google.rpc import status_pb2

from controlplane.api.proxies import NACKED, STALE, SYNCED, ProxyTracker
from controlplane.api.status import StatusView
from controlplane.mesh import ObjectKey, load_objects, resolve
from controlplane.observe import Observer
from controlplane.protocol.events import Push
from controlplane.protocol.sotw import SotwStream
from controlplane.resources import CLUSTER, LISTENER, ROUTE
from controlplane.sources.mesh import MeshCache

MESH = """
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80, appProtocol: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{name: http, port: 8080, appProtocol: http}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec: {gatewayClassName: x, listeners: [{name: h, port: 8000, protocol: HTTP}]}
"""
ROUTE_TEXT = """
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r}
spec:
  parentRefs: [{group: "", kind: Service, name: api, port: 8080}]
  rules: [{matches: [{path: {value: /v%d}}], backendRefs: [{name: api, port: 8080}]}]
"""
ROUTE_KEY = ObjectKey("HTTPRoute", "default", "r")


class Sidecar:
    """A scripted SotW client of one stream, reporting to an Observer as the server does."""

    def __init__(self, cache: MeshCache, observer: Observer) -> None:
        self.stream = SotwStream(cache.snapshot_for)
        self.observer = observer
        self.id = observer.opened(self.stream, "ADS", "test")
        self.pushes: dict[str, Push] = {}
        node = base_pb2.Node(id="web-1", cluster="web")
        json_format.ParseDict({"instance_ip": "10.0.0.1", "outbound_ip": "127.0.0.9"},
                              node.metadata)
        self.send(discovery_pb2.DiscoveryRequest(node=node, type_url=CLUSTER.type_url))
        self.send(discovery_pb2.DiscoveryRequest(type_url=LISTENER.type_url))

    def send(self, request: discovery_pb2.DiscoveryRequest) -> None:
        self.record(self.stream.receive(request, 0.0))

    def record(self, actions: list[Any]) -> None:
        self.observer.record(self.id, actions)
        for action in actions:
            if isinstance(action, Push):
                self.pushes[action.type_url] = action

    def changed(self) -> None:
        self.record(self.stream.snapshot_changed(0.0))

    def reply(self, type_url: str, error: str = "") -> None:
        push = self.pushes.pop(type_url)
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, version_info=push.version,
                                                 response_nonce=push.nonce)
        if type_url == ROUTE.type_url:
            request.resource_names.extend(["outbound|8080", "outbound|80"])
        if error:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        self.send(request)

    def ack_all(self) -> None:
        while self.pushes:
            self.reply(next(iter(self.pushes)))


def setup(text: str) -> tuple[MeshCache, ProxyTracker, Sidecar, list[int], StatusView]:
    cache = MeshCache()
    cache.set_mesh(resolve(load_objects(textwrap.dedent(text))))
    revision = [1]
    tracker = ProxyTracker(cache, "cp-1", lambda: revision[0], clock=lambda: 1000.0)
    observer = Observer(cache, hooks=(cache, tracker))
    tracker.attach(observer)
    sidecar = Sidecar(cache, observer)
    sidecar.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE.type_url,
                                                resource_names=["outbound|8080", "outbound|80"]))
    return cache, tracker, sidecar, revision, StatusView(cache, tracker)


def states(tracker: ProxyTracker) -> dict[str, str]:
    (record,) = tracker.records()
    return {item.type: item.state for item in record.types}


def programmed(view: StatusView, cache: MeshCache, key: ObjectKey, revision: int) -> tuple[str,
                                                                                          str]:
    found = view.of(key, cache.mesh.objects[key], revision=revision)["conditions"][-1]
    assert found["type"] == "Programmed"
    return found["reason"], found["message"]


def test_stale_until_acked_then_synced_and_stale_again_when_the_mesh_moves() -> None:
    cache, tracker, sidecar, revision, view = setup(MESH + ROUTE_TEXT % 1)
    assert states(tracker) == {"CDS": STALE, "LDS": STALE, "RDS": STALE}
    assert programmed(view, cache, ROUTE_KEY, 1)[0] == "Pending"
    sidecar.ack_all()
    assert states(tracker) == {"CDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}
    record = tracker.records()[0]
    assert (record.kind, record.name, record.address, record.synced_revision) == (
        "Service", "web", "10.0.0.1", 1)
    assert programmed(view, cache, ROUTE_KEY, 1) == ("Programmed", "ACKed by 1 proxies")
    # The Gateway is compiled for no connected proxy.
    gateway = ObjectKey("Gateway", "default", "edge")
    assert programmed(view, cache, gateway, 1) == ("Programmed", "no connected proxy uses it")

    revision[0] = 2
    cache.set_mesh(resolve(load_objects(textwrap.dedent(MESH + ROUTE_TEXT % 2))))
    assert states(tracker)["RDS"] == STALE  # before the stream even looked
    assert programmed(view, cache, ROUTE_KEY, 2)[0] == "Pending"
    sidecar.changed()
    sidecar.ack_all()
    assert states(tracker) == {"CDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}
    assert tracker.records()[0].synced_revision == 2
    assert programmed(view, cache, ROUTE_KEY, 2)[0] == "Programmed"



def test_a_proxy_that_stops_asking_for_every_name_of_a_type_is_synced() -> None:
    """A SotW client that drops the names of a type whose responses need not hold the state of
    the world gets no response (xds_protocol.rst, "Unsubscribing from resources"): it is in
    sync with what it asks for, and later revisions reach it (a Gateway proxy whose clusters no
    longer use its SVID stops asking for `default` and `ROOTCA`: it stayed STALE, and every
    Gateway it was compiled from Pending)."""
    cache, tracker, sidecar, revision, view = setup(MESH + ROUTE_TEXT % 1)
    sidecar.ack_all()
    last = tracker.records()[0].types
    rds = next(item for item in last if item.type == "RDS")
    sidecar.send(discovery_pb2.DiscoveryRequest(
        type_url=ROUTE.type_url, version_info=rds.acked_version,
        response_nonce=sidecar.stream.subscriptions[ROUTE.type_url].nonce))
    assert not sidecar.pushes
    assert states(tracker) == {"CDS": SYNCED, "LDS": SYNCED, "RDS": SYNCED}

    revision[0] = 2
    cache.set_mesh(resolve(load_objects(textwrap.dedent(MESH + ROUTE_TEXT % 2))))
    sidecar.changed()
    sidecar.ack_all()
    assert states(tracker)["RDS"] == SYNCED
    assert tracker.records()[0].synced_revision == 2
    gateway = ObjectKey("Gateway", "default", "edge")
    assert programmed(view, cache, gateway, 2)[0] == "Programmed"


def swap(cache: MeshCache, text: str, prepared: bool) -> None:
    """A new mesh, compiled on the spot or `prepared` off the loop (a new compiler and memo,
    as the store mirror and --mesh serve it)."""
    mesh = resolve(load_objects(textwrap.dedent(text)))
    cache.set_mesh(mesh, cache.prepare(mesh) if prepared else None)


@pytest.mark.parametrize("prepared", [False, True])
def test_a_nack_names_the_error_and_the_objects_that_changed(prepared: bool) -> None:
    cache, tracker, sidecar, revision, view = setup(MESH + ROUTE_TEXT % 1)
    sidecar.ack_all()
    revision[0] = 2
    swap(cache, MESH + ROUTE_TEXT % 2, prepared)
    sidecar.changed()
    sidecar.reply(ROUTE.type_url, error="routes: bad regex")
    sidecar.ack_all()
    record = tracker.records()[0]
    rds = next(item for item in record.types if item.type == "RDS")
    assert (rds.state, rds.error, rds.since) == (NACKED, "routes: bad regex", 1000.0)
    assert ROUTE_KEY in rds.suspects
    assert ObjectKey("Service", "default", "web") not in rds.suspects  # unchanged
    reason, message = programmed(view, cache, ROUTE_KEY, 2)
    assert (reason, message) == ("Invalid", "web-1 NACKed RDS: routes: bad regex")

    revision[0] = 3  # the route fixed: until the sidecar answers, the old NACK is not its
    swap(cache, MESH + ROUTE_TEXT % 3, prepared)
    assert programmed(view, cache, ROUTE_KEY, 3)[0] == "Pending"
    sidecar.changed()
    sidecar.ack_all()
    assert states(tracker)["RDS"] == SYNCED
    assert programmed(view, cache, ROUTE_KEY, 3)[0] == "Programmed"


def test_a_closed_stream_leaves() -> None:
    _, tracker, sidecar, _, _ = setup(MESH)
    sidecar.observer.closed(sidecar.id)
    assert tracker.records() == []


def test_the_application_health_a_sidecar_reports_is_in_its_status() -> None:
    """`health_reports: true` sidecars (--readiness-port): NOT_REPORTED, then what they report,
    in the record, on the wire and under `pointsman status`'s table; others show nothing."""
    from controlplane.api.wire import proxy_status
    from controlplane.commands.status import render
    from controlplane.protocol.health import HEALTH_TYPE_URL
    from protos.gen.pointsman.mesh.v1 import mesh_pb2 as pb

    _, plain, _, _, _ = setup(MESH)
    assert plain.records()[0].health == ""  # it said nothing about health
    cache = MeshCache()
    cache.set_mesh(resolve(load_objects(textwrap.dedent(MESH))))
    tracker = ProxyTracker(cache, "cp-1", lambda: 1, clock=lambda: 1000.0)
    observer = Observer(cache, hooks=(cache, tracker))
    tracker.attach(observer)
    stream = SotwStream(cache.snapshot_for)
    stream_id = observer.opened(stream, "ADS", "test")
    node = base_pb2.Node(id="api-1", cluster="api")
    json_format.ParseDict({"instance_ip": "10.0.0.2", "outbound_ip": "127.0.0.9",
                           "health_reports": True}, node.metadata)
    observer.record(stream_id, stream.receive(
        discovery_pb2.DiscoveryRequest(node=node, type_url=LISTENER.type_url), 0.0))
    assert (tracker.records()[0].health, tracker.records()[0].health_message) == (
        "NOT_REPORTED", "")
    sick = discovery_pb2.DiscoveryRequest(type_url=HEALTH_TYPE_URL)
    sick.error_detail.CopyFrom(status_pb2.Status(code=14, message="connection refused"))
    version = tracker.version
    observer.record(stream_id, stream.receive(sick, 0.0))
    assert tracker.version > version  # replicas see it
    record = tracker.records()[0]
    assert (record.health, record.health_message) == ("UNHEALTHY", "connection refused")
    text = render(pb.ProxyStatusResponse(proxies=[proxy_status(record)]))
    assert "api-1: application UNHEALTHY (connection refused): not an endpoint" in text
    observer.record(stream_id, stream.receive(
        discovery_pb2.DiscoveryRequest(type_url=HEALTH_TYPE_URL), 0.0))
    assert tracker.records()[0].health == "HEALTHY"
    assert "application UNHEALTHY" not in render(pb.ProxyStatusResponse(
        proxies=[proxy_status(tracker.records()[0])]))
