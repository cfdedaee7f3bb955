"""Building route models from Envoy-shaped dicts in tests."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_pb2

from protos.loader import parse_message
from proxy.codec.headers import Headers, RequestHead
from proxy.model.route import RouteConfig, translate_route_configuration


def route_config(obj: dict[str, Any]) -> RouteConfig:
    return translate_route_configuration(parse_message(obj, route_pb2.RouteConfiguration))


def one_host(*routes: dict[str, Any], domains: tuple[str, ...] = ("*",)) -> RouteConfig:
    return route_config({"name": "r", "virtual_hosts": [
        {"name": "vh", "domains": list(domains), "routes": list(routes)}]})


def request(path: str = "/", authority: str = "example.com", method: str = "GET",
            headers: tuple[tuple[str, str], ...] = ()) -> RequestHead:
    return RequestHead(method=method, path=path, authority=authority, headers=Headers(headers))
