"""Per-route filter configs arrive with RDS: the real sidecar applies them to the next request,
NACKs a route table holding one it cannot apply (naming typed_per_filter_config[<key>]) and
keeps serving the last good table."""

from __future__ import annotations

import http.client
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, LISTENER, ROUTE_CONFIGURATION
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.helpers import listener
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.bootstraps import HCM_TYPE, ROUTER
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port

FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"


def _listener(port: int) -> listener_pb2.Listener:
    hcm = {"name": "hcm", "typed_config": {
        "@type": HCM_TYPE, "stat_prefix": "ingress",
        "rds": {"route_config_name": "routes",
                "config_source": {"ads": {}, "resource_api_version": "V3"}},
        "http_filters": [{"name": "fault", "typed_config": {"@type": FAULT}}, ROUTER]}}
    return parse_message(listener("http", port, [{"filters": [hcm]}]), listener_pb2.Listener)


def _routes(per_filter: dict[str, Any]) -> route_pb2.RouteConfiguration:
    return parse_message({"name": "routes", "virtual_hosts": [{
        "name": "all", "domains": ["*"], "routes": [{
            "match": {"prefix": "/"}, "route": {"cluster": "nowhere"},
            "typed_per_filter_config": per_filter}]}]}, route_pb2.RouteConfiguration)


def _abort(status: int) -> dict[str, Any]:
    return {"fault": {"@type": FAULT, "abort": {"http_status": status,
                                                "percentage": {"numerator": 100}}}}


def _status(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": "a.test"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_per_route_configs_follow_rds_updates() -> None:
    ads = FakeAds()
    port = free_port()
    try:
        with Pointsman(ads_bootstrap(ads.port)) as proxy:
            ads.wait_request(LISTENER)
            ads.push(CLUSTER, "c1", [])  # nothing to warm: the listener follows at once
            ads.push(LISTENER, "l1", [_listener(port)])
            ads.wait_request(ROUTE_CONFIGURATION)
            ads.push(ROUTE_CONFIGURATION, "r1", [_routes(_abort(418))])
            proxy.wait_until(lambda: _status(port) == 418, 20, "routes applied")
            nonce = ads.push(ROUTE_CONFIGURATION, "r2", [_routes({"csrf": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.csrf.v3.CsrfPolicy",
                "filter_enabled": {"default_value": {"numerator": 100}}}})])
            nack = ads.wait_request(ROUTE_CONFIGURATION, nonce=nonce)
            assert nack.version_info == "r1"
            assert "typed_per_filter_config[csrf]" in nack.error_detail.message
            assert _status(port) == 418  # the last good table still serves
            ads.push(ROUTE_CONFIGURATION, "r3", [_routes(_abort(451))])
            proxy.wait_until(lambda: _status(port) == 451, 20, "the update applied")
            assert proxy.stat("http.ingress.fault.aborts_injected") >= 3
    finally:
        ads.stop()
