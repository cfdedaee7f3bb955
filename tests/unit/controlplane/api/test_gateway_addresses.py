"""A Gateway's status.addresses (GatewayOptionalAddressValue, GatewayStaticAddresses): its
IPAddress values; with none (or an address without a value), where its connected proxies
bind (their instance_ip)."""

from __future__ import annotations

import textwrap

from controlplane.api.proxies import ProxyRecord
from controlplane.api.status import StatusView
from controlplane.mesh import ObjectKey, load_objects, resolve
from controlplane.sources.mesh import MeshCache

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: pointsman
  addresses: ADDRESSES
  listeners: [{name: http, port: 8080, protocol: HTTP}]
"""
KEY = ObjectKey("Gateway", "default", "edge")


class Proxies:
    def __init__(self, records: list[ProxyRecord]) -> None:
        self.version = 1
        self._records = records

    def records(self) -> list[ProxyRecord]:
        return self._records


def addresses(value: str, records: list[ProxyRecord]) -> list[dict[str, str]]:
    cache = MeshCache()
    cache.set_mesh(resolve(load_objects(textwrap.dedent(GATEWAY.replace("ADDRESSES", value)))))
    view = StatusView(cache, Proxies(records))
    return list(view.of(KEY, cache.mesh.objects[KEY])["addresses"])


def test_addresses_are_the_spec_values_else_the_proxies() -> None:
    proxies = [ProxyRecord("edge-1", "cp", kind="Gateway", namespace="default", name="edge",
                           address="127.0.0.7"),
               ProxyRecord("other-1", "cp", kind="Gateway", namespace="default", name="other",
                           address="127.0.0.8"),
               ProxyRecord("web-1", "cp", kind="Service", namespace="default", name="edge",
                           address="127.0.0.9")]
    assert addresses("[{value: 10.0.0.1}]", proxies) == [
        {"type": "IPAddress", "value": "10.0.0.1"}]
    assert addresses("[{type: IPAddress}]", proxies) == [
        {"type": "IPAddress", "value": "127.0.0.7"}]
    assert addresses("[]", []) == []
