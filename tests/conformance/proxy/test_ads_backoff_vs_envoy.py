"""The ADS reconnect backoff of the real processes, Envoy 1.40 beside `pointsman proxy`.

`ads_config.grpc_services[0].envoy_grpc.retry_policy.retry_back_off` sets the base and maximum
of the jittered exponential backoff between ADS streams; a response resets it to the base.
Measured on Envoy 1.40 against a control plane that accepts and at once closes each
connection: with base 100 ms / max 200 ms, 39 attempts in 4 s, every gap below 0.2 s; with the
defaults (500 ms / 30 s) 5 attempts in 8 s, gaps 0.45, 0.80, 0.13, 3.59 s (below 0.5, 1, 2,
4 s).

The bounds below hold with wide margins on a loaded machine: a run that ignored the configured
maximum would have its median gap near 0.5 s, one that ignored the whole policy near 1 s.
"""

from __future__ import annotations

import itertools
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from tests.support.bootstraps import H2_OPTIONS, static_cluster
from tests.support.envoy import Envoy
from tests.support.pointsman import Pointsman
from tests.support.ports import free_port
from tests.support.processes import ManagedProcess

pytestmark = pytest.mark.conformance

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
WINDOW = 5.0  # seconds of attempts counted, from the first one


def ads_bootstrap(xds_port: int, retry_policy: dict[str, Any] | None) -> dict[str, Any]:
    envoy_grpc: dict[str, Any] = {"cluster_name": "xds"}
    if retry_policy is not None:
        envoy_grpc["retry_policy"] = retry_policy
    return {
        "node": {"id": "sidecar-1", "cluster": "web"},
        "dynamic_resources": {
            "ads_config": {"api_type": "GRPC", "transport_api_version": "V3",
                           "grpc_services": [{"envoy_grpc": envoy_grpc}]},
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [static_cluster(
            "xds", [xds_port], typed_extension_protocol_options=H2_OPTIONS)]},
    }


class RefusingControlPlane:
    """A control plane that is down: it accepts each connection and closes it at once,
    noting when (a refused connect would not show the attempts)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)  # closing the socket does not wake a blocked accept()
        self.port = self.sock.getsockname()[1]
        self.attempts: list[float] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.attempts.append(time.monotonic())
            connection.close()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self.sock.close()


class OneResponseControlPlane(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """Answers each ADS stream with one (empty) CDS response, then ends the stream."""

    def __init__(self) -> None:
        self.port = free_port()
        self.attempts: list[float] = []
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def StreamAggregatedResources(self, request_iterator: Iterator[Any],
                                  context: grpc.ServicerContext) -> Iterator[Any]:
        self.attempts.append(time.monotonic())
        yield discovery_pb2.DiscoveryResponse(type_url=CLUSTER, version_info="1",
                                              nonce=f"n{len(self.attempts)}")

    def stop(self) -> None:
        self.server.stop(0)


def _gaps(control_plane: Any, start: Callable[[int], ManagedProcess]) -> list[float]:
    """Start the proxy against `control_plane`, wait for the first attempt and WINDOW more
    seconds; the gaps between the attempts made in that window."""
    process = start(control_plane.port)
    try:
        process.wait_until(lambda: bool(control_plane.attempts), 30, "first ADS attempt")
        time.sleep(WINDOW)
    finally:
        process.stop()
        control_plane.stop()
    first = control_plane.attempts[0]
    attempts = [t for t in control_plane.attempts if t - first <= WINDOW]
    return [later - earlier for earlier, later in itertools.pairwise(attempts)]


def _envoy(policy: dict[str, Any] | None) -> Callable[[int], ManagedProcess]:
    return lambda port: Envoy(ads_bootstrap(port, policy), name="envoy-ads-backoff")


def _ours(policy: dict[str, Any] | None) -> Callable[[int], ManagedProcess]:
    return lambda port: Pointsman(ads_bootstrap(port, policy), name="pointsman-ads-backoff")


FAST = {"retry_back_off": {"base_interval": "0.1s", "max_interval": "0.2s"}}


@pytest.mark.parametrize("start", [_envoy, _ours], ids=["envoy", "pointsman"])
def test_configured_base_and_max_interval_pace_the_reconnects(
        start: Callable[[dict[str, Any] | None], Callable[[int], ManagedProcess]]) -> None:
    gaps = _gaps(RefusingControlPlane(), start(FAST))
    # Draws below 0.1 s, then below 0.2 s: about 30 attempts in 5 s.
    assert len(gaps) >= 12, gaps
    assert statistics.median(gaps) < 0.25, gaps


@pytest.mark.parametrize("start", [_envoy, _ours], ids=["envoy", "pointsman"])
def test_default_backoff_starts_at_half_a_second_and_doubles(
        start: Callable[[dict[str, Any] | None], Callable[[int], ManagedProcess]]) -> None:
    gaps = _gaps(RefusingControlPlane(), start(None))
    # Draws below 0.5, 1, 2, 4 s: at most a handful of attempts in 5 s, the first gap short.
    assert 1 <= len(gaps) <= 8, gaps
    assert gaps[0] < 0.5 + 0.4, gaps


@pytest.mark.parametrize("start", [_envoy, _ours], ids=["envoy", "pointsman"])
def test_a_response_resets_the_backoff_to_its_base(
        start: Callable[[dict[str, Any] | None], Callable[[int], ManagedProcess]]) -> None:
    # base 100 ms, max 10 s: without the reset the gaps would double to 0.2, 0.4, 0.8, 1.6 s
    # (about 7 streams in 5 s); with it each wait is drawn below 0.1 s again.
    policy = {"retry_back_off": {"base_interval": "0.1s", "max_interval": "10s"}}
    gaps = _gaps(OneResponseControlPlane(), start(policy))
    assert len(gaps) >= 15, gaps
    assert statistics.median(gaps) < 0.25, gaps
