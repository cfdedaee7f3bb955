"""A rejected LDS update changes nothing: three listeners, an update where only the last is
bad (its inline route names an unknown cluster, found when its HTTP connection manager is
created), against the real sidecar process over ADS (tests/integration/proxy/fake_ads.py).

Ours: NACK naming the bad listener and field, all three keep serving the old version, the old
version sent again is ACKed and serves, a good update then applies to all three.

Envoy 1.40, same script: the same NACK (version_info stays "1", the message names the unknown
cluster), but it applies the listeners of the rejected update that it could build
(LdsApiImpl adds each listener on its own and reports the failures together): the first two
answer the rejected version. Pointsman deliberately does not (issue 11: "A rejected update
changes nothing"); the Envoy run records that difference.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, LISTENER
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.bootstraps import HCM_TYPE, ROUTER, static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.processes import http_get

pytestmark = pytest.mark.conformance

NAMES = ("l1", "l2", "l3")


def http_listener(name: str, port: int, body: str, cluster: str | None = None
                  ) -> listener_pb2.Listener:
    """An HCM answering `body` (direct_response), or routing to `cluster`."""
    action: dict[str, Any] = ({"route": {"cluster": cluster}} if cluster is not None
                              else {"direct_response": {"status": 200,
                                                        "body": {"inline_string": body}}})
    hcm = {"@type": HCM_TYPE, "stat_prefix": name, "http_filters": [ROUTER],
           "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"],
                                               "routes": [{"match": {"prefix": "/"},
                                                           **action}]}]}}
    return parse_message({
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}]}, listener_pb2.Listener)


def version(ports: dict[str, int], tag: str, bad_last: bool = False
            ) -> list[listener_pb2.Listener]:
    return [http_listener(name, port, f"{tag} {name}",
                          cluster="missing" if bad_last and name == "l3" else None)
            for name, port in ports.items()]


def answers(ports: dict[str, int]) -> dict[str, str]:
    return {name: http_get(f"http://127.0.0.1:{port}/", timeout=10)[1]
            for name, port in ports.items()}


@pytest.fixture
def ads() -> Iterator[FakeAds]:
    server = FakeAds()
    yield server
    server.stop()


def run_script(proxy_class: type[Pointsman] | type[Envoy], ads: FakeAds
               ) -> dict[str, Any]:
    """Push v1, the bad v2, v1 again, then v3; what was answered and served at each step."""
    ports = {name: free_port() for name in NAMES}
    cluster = parse_message(static_cluster("backend", [free_port()]), cluster_pb2.Cluster)
    seen: dict[str, Any] = {}
    with proxy_class(ads_bootstrap(ads.port)) as proxy:
        ads.wait_request(LISTENER)
        ads.wait_request(CLUSTER, nonce=ads.push(CLUSTER, "c1", [cluster]))
        ads.wait_request(LISTENER, nonce=ads.push(LISTENER, "1", version(ports, "v1")))
        proxy.wait_ready()
        seen["v1"] = answers(ports)
        nonce = ads.push(LISTENER, "2", version(ports, "v2", bad_last=True))
        seen["nack"] = ads.wait_request(LISTENER, nonce=nonce)
        seen["after nack"] = answers(ports)
        seen["v1 again"] = ads.wait_request(
            LISTENER, nonce=ads.push(LISTENER, "1", version(ports, "v1")))
        proxy.wait_until(lambda: answers(ports) == seen["v1"], 20, "back to v1")
        seen["v3"] = ads.wait_request(LISTENER, nonce=ads.push(LISTENER, "3",
                                                               version(ports, "v3")))
        proxy.wait_until(lambda: answers(ports) == {n: f"v3 {n}" for n in NAMES}, 20, "v3")
        seen["rejected"] = proxy.stat("listener_manager.lds.update_rejected")
    return seen


def test_rejected_lds_update_changes_no_listener(ads: FakeAds) -> None:
    seen = run_script(Pointsman, ads)
    assert seen["v1"] == {name: f"v1 {name}" for name in NAMES}
    nack = seen["nack"]
    assert nack.version_info == "1" and nack.error_detail.code == 3
    assert nack.error_detail.message == (
        "LDS: resource 'l3': field 'filter_chains[0].filters[0].typed_config.route_config."
        "virtual_hosts[0].routes[0].route.cluster': unknown cluster 'missing'")
    assert seen["after nack"] == seen["v1"]  # nothing of the rejected update serves
    assert seen["v1 again"].version_info == "1"
    assert not seen["v1 again"].HasField("error_detail")
    assert seen["v3"].version_info == "3" and not seen["v3"].HasField("error_detail")
    assert seen["rejected"] == 1


def test_envoy_applies_the_good_listeners_of_a_rejected_lds_update(ads: FakeAds) -> None:
    seen = run_script(Envoy, ads)
    assert seen["v1"] == {name: f"v1 {name}" for name in NAMES}
    nack = seen["nack"]
    assert nack.version_info == "1" and nack.error_detail.code != 0
    assert "unknown cluster 'missing'" in nack.error_detail.message
    assert seen["after nack"] == {"l1": "v2 l1", "l2": "v2 l2", "l3": "v1 l3"}
    assert seen["v1 again"].version_info == "1"
    assert not seen["v1 again"].HasField("error_detail")
    assert seen["v3"].version_info == "3"
    assert seen["rejected"] == 1
