"""The sidecar's lifecycle at log level info, as an operator reads it: connected to the
control plane, listeners added / updated / removed with their addresses, a NACK with its
reason, and the stream ending (a scripted ADS server drives it)."""

from __future__ import annotations

import time

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, LISTENER
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.helpers import listener, tcp_proxy
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port


def _cluster(connect_timeout: str = "1s") -> cluster_pb2.Cluster:
    return parse_message({"name": "backend", "type": "STATIC", "connect_timeout": connect_timeout,
                          "load_assignment": {"cluster_name": "backend"}}, cluster_pb2.Cluster)


def _listener(port: int, stat_prefix: str = "a") -> listener_pb2.Listener:
    chain = tcp_proxy("backend")
    chain["typed_config"]["stat_prefix"] = stat_prefix
    return parse_message(listener("l4", port, [{"filters": [chain]}]), listener_pb2.Listener)


def _wait_for(proxy: Pointsman, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in proxy.output():
            return proxy.output()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged:\n{proxy.output()[-3000:]}")


def test_lifecycle_is_logged_at_info() -> None:
    ads = FakeAds()
    port = free_port()
    try:
        with Pointsman(ads_bootstrap(ads.port), extra_args=("--log-level", "info")) as proxy:
            ads.wait_request(CLUSTER)
            ads.wait_request(LISTENER)
            ads.wait_request(CLUSTER, nonce=ads.push(CLUSTER, "c1", [_cluster()]))
            _wait_for(proxy, f"connected to the control plane at 127.0.0.1:{ads.port} "
                             "(StreamAggregatedResources)")
            ads.wait_request(LISTENER, nonce=ads.push(LISTENER, "l1", [_listener(port)]))
            _wait_for(proxy, f"listener l4 added (127.0.0.1:{port})")
            nonce = ads.push(CLUSTER, "c2", [_cluster(connect_timeout="0s")])
            ads.wait_request(CLUSTER, nonce=nonce)
            out = _wait_for(proxy, "NACK CDS version 'c2'")
            line = next(line for line in out.splitlines() if "NACK CDS" in line)
            assert "WARNING" in line and "connect_timeout" in line and "backend" in line
            ads.wait_request(LISTENER, nonce=ads.push(LISTENER, "l2",
                                                      [_listener(port, "b")]))
            _wait_for(proxy, f"listener l4 updated (127.0.0.1:{port})")
            ads.wait_request(LISTENER, nonce=ads.push(LISTENER, "l3", []))
            _wait_for(proxy, f"listener l4 removed (127.0.0.1:{port}, draining)")
            ads.stop()
            _wait_for(proxy, f"disconnected from the control plane at 127.0.0.1:{ads.port}")
    finally:
        ads.stop()
