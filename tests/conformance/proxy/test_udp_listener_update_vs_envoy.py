"""Differential: a UDP listener with udp_proxy updated in place, or removed, by LDS while a
client's session is open, Envoy 1.40 vs `pointsman proxy`, both driven by the same scripted
ADS server.

Envoy stops a UDP listener by destroying it (envoyproxy/envoy#7465), and its udp_proxy
sessions with it: the session of the old version ends as the update is applied (access-logged,
its upstream socket closed), and the client's next datagram opens a session on the new version.
We used to drain the old version's sessions until they idled out, as for TCP connections.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2

from protos.loader import parse_message
from protos.registry import CLUSTER, LISTENER
from tests.integration.proxy.fake_ads import FakeAds
from tests.integration.proxy.test_ads_controlplane import ads_bootstrap
from tests.support.bootstraps import static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.udp_servers import NamedUdpBackend, query, udp_client, udp_proxy_listener

pytestmark = pytest.mark.conformance

FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STATS = ("udp.v1.downstream_sess_total", "udp.v1.downstream_sess_active",
         "udp.v1.downstream_sess_rx_datagrams", "udp.v2.downstream_sess_total",
         "udp.v2.downstream_sess_active", "udp.v2.downstream_sess_rx_datagrams")


@pytest.fixture(scope="module")
def backend() -> Any:
    server = NamedUdpBackend("x")
    yield server
    server.stop()


def udp_listener(port: int, version: str, log: Path) -> listener_pb2.Listener:
    access_log = [{"name": "log", "typed_config": {
        "@type": FILE_LOG, "path": str(log),
        "log_format": {"text_format_source": {
            "inline_string": f"{version} %RESPONSE_FLAGS% %BYTES_RECEIVED%\n"}}}}]
    return parse_message(udp_proxy_listener("dns", port, {
        "stat_prefix": version, "cluster": "backends", "access_log": access_log}),
        listener_pb2.Listener)


def first_answer(client: socket.socket, port: int) -> None:
    """Until the listener is bound: UDP gives no refusal to wait on."""
    deadline = time.monotonic() + 20
    while True:
        try:
            query(client, ("127.0.0.1", port), 1, timeout=0.2)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def run(kind: type[Envoy] | type[Pointsman], backend: NamedUdpBackend, tmp_path: Path,
        remove: bool) -> dict[str, Any]:
    ads, port = FakeAds(), free_port()
    log = tmp_path / f"{kind.__name__}.log"
    log.write_text("")
    config = ads_bootstrap(ads.port)
    config["static_resources"]["clusters"].append(static_cluster("backends", [backend.port]))
    extra: dict[str, Any] = {"extra_args": ("--concurrency", "1",
                                            "--file-flush-interval-msec", "100")} \
        if kind is Envoy else {}
    client = udp_client()
    try:
        with kind(config, name=f"{kind.__name__}-udp-update", **extra) as proxy:
            ads.wait_request(CLUSTER)
            ads.push(CLUSTER, "c1", [])
            ads.wait_request(LISTENER)
            nonce = ads.push(LISTENER, "l1", [udp_listener(port, "v1", log)])
            ads.wait_request(LISTENER, nonce=nonce)
            proxy.wait_ready()  # type: ignore[attr-defined]
            first_answer(client, port)
            peers_before = set(backend.peers)
            nonce = ads.push(LISTENER, "l2", [] if remove else [udp_listener(port, "v2", log)])
            ads.wait_request(LISTENER, nonce=nonce)
            time.sleep(0.3)
            old_session_active = proxy.stat("udp.v1.downstream_sess_active")
            answers = []
            for ident in range(100, 104):
                try:
                    answers.append(query(client, ("127.0.0.1", port), ident, timeout=1.0))
                except TimeoutError:
                    answers.append("no answer")
            deadline = time.monotonic() + 5  # file logs are flushed every 100 ms / 1 s
            while not log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            return {"old_session_active_after_ack": old_session_active, "answers": answers,
                    "new_upstream_sockets": len(set(backend.peers) - peers_before),
                    "stats": {name: proxy.stat(name) for name in STATS},
                    "access_log": log.read_text().split("\n")}
    finally:
        client.close()
        ads.stop()


@pytest.mark.parametrize("remove", [False, True], ids=["updated", "removed"])
def test_a_replaced_udp_listener_ends_its_sessions_as_envoy_does(
        backend: NamedUdpBackend, tmp_path: Path, remove: bool) -> None:
    envoy = run(Envoy, backend, tmp_path, remove)
    ours = run(Pointsman, backend, tmp_path, remove)
    assert ours == envoy
    assert envoy["old_session_active_after_ack"] == 0
    assert envoy["access_log"][0] == "v1 - 13"  # the old session, logged as it ended
    if not remove:
        assert envoy["answers"] == ["x"] * 4 and envoy["new_upstream_sockets"] == 1
