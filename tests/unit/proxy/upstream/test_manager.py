"""ClusterManager bookkeeping without I/O: add, reconfigure, remove, EDS updates, warming."""

from __future__ import annotations

import random

from proxy.model.endpoint import Endpoint, LoadAssignment, Locality, LocalityEndpoints
from proxy.stats import Stats
from proxy.upstream.host import HealthFlag
from proxy.upstream.manager import ClusterManager
from tests.unit.proxy.upstream.builders import cluster, static_endpoints


def _eds(name: str, *ports: int, factor: int = 140) -> LoadAssignment:
    return LoadAssignment(name, (LocalityEndpoints(
        Locality(), tuple(Endpoint("127.0.0.1", port) for port in ports)),), factor)


def _manager() -> ClusterManager:
    return ClusterManager(Stats(), rng=random.Random(1))


def test_static_cluster_is_ready_at_once() -> None:
    manager = _manager()
    manager.update([cluster(load_assignment={"cluster_name": "backend",
                                             "endpoints": [static_endpoints(1, 2)]})])
    runtime = manager.get("backend")
    assert runtime is not None and len(runtime.hosts) == 2
    assert manager.all_initialized()
    assert manager.get("missing") is None


def test_eds_cluster_warms_until_its_assignment_arrives() -> None:
    manager = _manager()
    manager.update([cluster(name="web", type="EDS",
                            eds_cluster_config={"service_name": "web-eds"})])
    assert manager.eds_resource_names() == ["web-eds"]
    assert not manager.all_initialized()
    manager.update_assignment(_eds("web-eds", 1, 2, 3, factor=100))
    runtime = manager.get("web")
    assert runtime is not None and [h.port for h in runtime.hosts] == [1, 2, 3]
    assert manager.all_initialized()
    assert runtime.host_set._overprovisioning_factor() == 100


def test_assignment_before_cluster_is_kept() -> None:
    manager = _manager()
    manager.update([], {"web": _eds("web", 7)})
    manager.update([cluster(name="web", type="EDS", eds_cluster_config={})])
    assert [h.port for h in manager.get("web").hosts] == [7]


def test_reconfigure_keeps_host_state_and_removal_drops_cluster() -> None:
    manager = _manager()
    manager.update([cluster(name="web", type="EDS", eds_cluster_config={})],
                   {"web": _eds("web", 1, 2)})
    runtime = manager.get("web")
    host = runtime.hosts[0]
    host.set_flag(HealthFlag.FAILED_OUTLIER_CHECK, True)
    manager.update([cluster(name="web", type="EDS", eds_cluster_config={},
                            lb_policy="RANDOM")])
    assert manager.get("web") is runtime
    assert runtime.config.lb_policy.name == "RANDOM"
    assert runtime.hosts[0] is host and not host.healthy
    manager.update([])
    assert manager.get("web") is None
    assert manager.names() == []


def test_admin_view_is_json_able() -> None:
    import json

    manager = _manager()
    manager.update([cluster(load_assignment={"cluster_name": "backend",
                                             "endpoints": [static_endpoints(1)]})])
    view = json.loads(json.dumps(manager.admin_view()))
    assert view["cluster_statuses"][0]["name"] == "backend"


def test_cluster_that_does_not_wait_for_warming() -> None:
    manager = _manager()
    manager.update([cluster(name="lazy", type="EDS", eds_cluster_config={},
                            wait_for_warm_on_init=False)])
    assert not manager.get("lazy").initialized
    assert manager.all_initialized()


def test_protocol_option_changes_reach_the_runtime() -> None:
    manager = _manager()
    options = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
        "explicit_http_config": {"http2_protocol_options": {}}}}
    manager.update([cluster(load_assignment={"cluster_name": "backend",
                                             "endpoints": [static_endpoints(1)]})])
    manager.update([cluster(load_assignment={"cluster_name": "backend",
                                             "endpoints": [static_endpoints(1)]},
                            typed_extension_protocol_options=options)])
    runtime = manager.get("backend")
    assert runtime is not None
    assert runtime.config.protocol_options.http.http2


def test_removing_an_eds_cluster_forgets_its_endpoints() -> None:
    manager = _manager()
    manager.update([cluster(name="web", type="EDS", eds_cluster_config={})],
                   {"web": _eds("web", 1)})
    manager.update([])
    manager.update([cluster(name="web", type="EDS", eds_cluster_config={})])
    assert not manager.get("web").initialized  # waits for a fresh EDS response
