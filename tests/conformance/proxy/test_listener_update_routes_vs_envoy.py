"""Differential: while an updated listener warms (its new route configuration has not
arrived), the previous version keeps serving, with its own routes, Envoy 1.40 vs `pointsman
proxy`, both driven by the same scripted ADS server.

Envoy's listener warming (intro/arch_overview/operations/init): the old listener serves until
the new one is warm. We dropped the old version's route configuration as soon as the listener
update arrived, so its requests got 404 NR until the new routes came.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, LISTENER, ROUTE_CONFIGURATION
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.helpers import listener
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

pytestmark = pytest.mark.conformance

HCM = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
       "HttpConnectionManager")
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def http_listener(port: int, routes: str) -> listener_pb2.Listener:
    hcm = {"name": "hcm", "typed_config": {
        "@type": HCM, "stat_prefix": "ingress",
        "rds": {"route_config_name": routes,
                "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "router", "typed_config": {"@type": ROUTER}}]}}
    return parse_message(listener("http", port, [{"filters": [hcm]}]), listener_pb2.Listener)


def direct_routes(name: str, body: str) -> route_pb2.RouteConfiguration:
    return parse_message({"name": name, "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "direct_response": {
            "status": 200, "body": {"inline_string": body}}}]}]}, route_pb2.RouteConfiguration)


def get(port: int) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def run(kind: type[Envoy] | type[Pointsman]) -> dict[str, Any]:
    ads = FakeAds()
    port = free_port()
    try:
        with kind(ads_bootstrap(ads.port), name=f"{kind.__name__}-listener-update") as proxy:
            ads.wait_request(CLUSTER)
            ads.push(CLUSTER, "c1", [])
            ads.wait_request(LISTENER)
            ads.push(LISTENER, "l1", [http_listener(port, "routes-a")])
            ads.wait_request(ROUTE_CONFIGURATION)
            ads.push(ROUTE_CONFIGURATION, "r1", [direct_routes("routes-a", "version a")])
            proxy.wait_ready()  # type: ignore[attr-defined]
            before = get(port)
            mark = len(ads.requests)
            nonce = ads.push(LISTENER, "l2", [http_listener(port, "routes-b")])
            ads.wait_request(LISTENER, nonce=nonce)  # ACKed: the new version warms
            while_warming = get(port)
            subscribed = _asking_for(ads, "routes-b", after=mark)
            ads.push(ROUTE_CONFIGURATION, "r2", [direct_routes("routes-b", "version b")])
            proxy.wait_until(lambda: get(port)[1] == "version b", 20, "the new listener")
            return {"before": before, "while_warming": while_warming,
                    "asked_for": sorted(subscribed.resource_names)}
    finally:
        ads.stop()


def _asking_for(ads: FakeAds, name: str, *, after: int) -> Any:
    """The first RDS request since `after` that names `name`."""
    while True:
        request = ads.wait_request(ROUTE_CONFIGURATION, after=after)
        if name in request.resource_names:
            return request
        after = ads.requests.index(request) + 1


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, dict[str, Any]]]:
    yield {"envoy": run(Envoy), "ours": run(Pointsman)}


def test_the_previous_listener_serves_with_its_routes_while_the_new_one_warms(
        outcomes: dict[str, dict[str, Any]]) -> None:
    envoy, ours = outcomes["envoy"], outcomes["ours"]
    assert envoy["before"] == envoy["while_warming"] == (200, "version a")
    assert ours["before"] == ours["while_warming"] == (200, "version a")


def test_both_route_configurations_stay_subscribed_while_it_warms(
        outcomes: dict[str, dict[str, Any]]) -> None:
    assert outcomes["envoy"]["asked_for"] == ["routes-a", "routes-b"]
    assert outcomes["ours"]["asked_for"] == outcomes["envoy"]["asked_for"]
