"""Building Listener models from Envoy YAML-shaped dicts (shared by the proxy unit tests)."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2

import proxy.network.tcp_proxy  # noqa: F401  (registers the tcp_proxy factory)
from protos.loader import parse_message
from proxy.model.listener import Listener, translate_listener

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
TLS_INSPECTOR = ("type.googleapis.com/"
                 "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector")


def tcp_proxy_filter(cluster: str) -> dict[str, Any]:
    return {"name": "envoy.filters.network.tcp_proxy",
            "typed_config": {"@type": TCP_PROXY, "stat_prefix": cluster, "cluster": cluster}}


def chain(cluster: str, **match: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"filters": [tcp_proxy_filter(cluster)]}
    if match:
        result["filter_chain_match"] = match
    return result


def listener_dict(*chains: dict[str, Any], default: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "test",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
        "filter_chains": list(chains),
        **extra,
    }
    if default:
        body["default_filter_chain"] = chain(default)
    return body


def build(body: dict[str, Any]) -> Listener:
    return translate_listener(parse_message(body, listener_pb2.Listener))
