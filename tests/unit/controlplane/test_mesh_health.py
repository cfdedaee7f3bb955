"""Registration with application health (sources/readiness.py): a sidecar whose node says
`health_reports: true` is an endpoint only once it has ACKed its listeners AND reported its
application healthy; it is removed when it reports it unhealthy and added again when healthy.
Nodes that report no health keep the ACK-only registration."""

from __future__ import annotations

from pathlib import Path

from envoy.config.core.v3 import base_pb2

from controlplane.protocol.events import Acked, HealthReported, NodeIdentified
from controlplane.resources import LISTENER
from controlplane.sources.mesh import MeshCache
from tests.unit.controlplane.test_mesh_source import endpoints_of, loaded, node
from tests.unit.controlplane.test_mesh_workloads import _cache, workload

API = "outbound|8080||api.default"
LDS_ACK = Acked(LISTENER.type_url, "v1", "n1", 0.01)


def reporting(name: str, node_id: str, ip: str, value: object = True) -> base_pb2.Node:
    message = node(name, node_id, ip)
    message.metadata.update({"health_reports": value})
    return message


def api_endpoints(cache: MeshCache) -> list[str]:
    return endpoints_of(cache.snapshot_for(node("web", "web-1", "10.0.0.2")), API)


def test_a_reporting_sidecar_is_an_endpoint_only_while_acked_and_healthy(
        tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    api = reporting("api", "api-1", "10.0.0.3")
    cache.record(7, "api-1", [NodeIdentified(api), LDS_ACK])
    assert api_endpoints(cache) == []  # ACKed, but its application is not ready yet
    assert cache.health_of(7) == ("NOT_REPORTED", "")
    cache.record(7, "api-1", [HealthReported(True)])
    assert api_endpoints(cache) == ["10.0.0.3"]
    assert cache.health_of(7) == ("HEALTHY", "")
    cache.record(7, "api-1", [HealthReported(False, "connection refused")])
    assert api_endpoints(cache) == []
    assert cache.health_of(7) == ("UNHEALTHY", "connection refused")
    cache.record(7, "api-1", [HealthReported(True)])
    assert api_endpoints(cache) == ["10.0.0.3"]
    cache.stream_closed(7)
    assert api_endpoints(cache) == []
    assert cache.health_of(7) == ("", "")


def test_healthy_before_the_ack_registers_at_the_ack(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    api = reporting("api", "api-1", "10.0.0.3")
    cache.record(7, "api-1", [NodeIdentified(api), HealthReported(True)])
    assert api_endpoints(cache) == []
    cache.record(7, "api-1", [LDS_ACK])
    assert api_endpoints(cache) == ["10.0.0.3"]


def test_one_replica_unhealthy_leaves_the_other_registered(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    for stream_id, ip in ((7, "10.0.0.3"), (8, "10.0.0.4")):
        node_id = f"api-{stream_id}"
        cache.record(stream_id, node_id, [NodeIdentified(reporting("api", node_id, ip)),
                                          LDS_ACK, HealthReported(True)])
    assert api_endpoints(cache) == ["10.0.0.3", "10.0.0.4"]
    cache.record(8, "api-8", [HealthReported(False, "timeout")])
    assert api_endpoints(cache) == ["10.0.0.3"]


def test_a_node_that_reports_no_health_is_registered_at_its_ack_as_before(
        tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    api = node("api", "api-1", "10.0.0.3")  # an Envoy sidecar, an older pointsman sidecar
    cache.record(7, "api-1", [NodeIdentified(api), LDS_ACK])
    assert api_endpoints(cache) == ["10.0.0.3"]
    cache.record(7, "api-1", [HealthReported(False, "ignored: it did not say it reports")])
    assert api_endpoints(cache) == ["10.0.0.3"]
    assert cache.health_of(7) == ("", "")


def test_a_bad_health_reports_value_is_refused_naming_the_field(tmp_path: Path) -> None:
    cache, _, _ = loaded(tmp_path)
    api = reporting("api", "api-1", "10.0.0.3", value="yes")
    cache.record(7, "api-1", [NodeIdentified(api), LDS_ACK, HealthReported(True)])
    assert api_endpoints(cache) == []
    assert "node.metadata.health_reports: must be true or false" in cache.node_errors["api-1"]


def test_a_reporting_workload_backs_its_services_only_while_healthy(tmp_path: Path) -> None:
    cache = _cache(tmp_path, MeshCache())
    client = workload("client", "10.0.0.9", "127.0.0.9", app="client")
    echo = workload("echo-v1", "10.0.0.1", "127.0.0.8", app="echo")
    echo.metadata.update({"health_reports": True})
    cache.record(3, echo.id, [NodeIdentified(echo), LDS_ACK])
    assert endpoints_of(cache.snapshot_for(client), "outbound|8080||echo.default") == []
    cache.record(3, echo.id, [HealthReported(True)])
    assert endpoints_of(cache.snapshot_for(client), "outbound|8080||echo.default") == [
        "10.0.0.1"]
    cache.record(3, echo.id, [HealthReported(False, "refused")])
    assert endpoints_of(cache.snapshot_for(client), "outbound|8080||echo.default") == []


def test_the_admin_status_shows_a_reporting_node_health(tmp_path: Path) -> None:
    from controlplane.observe import Observer
    from controlplane.protocol.sotw import SotwStream

    cache, _, _ = loaded(tmp_path)
    observer = Observer(cache, hooks=(cache,))
    stream = SotwStream(cache.snapshot_for)
    stream.node = reporting("api", "api-1", "10.0.0.3")
    stream_id = observer.opened(stream, "ADS", "test")
    observer.record(stream_id, [NodeIdentified(stream.node), HealthReported(False, "refused")])
    [status] = observer.status()["nodes"]
    assert (status["health"], status["health_message"]) == ("UNHEALTHY", "refused")
