"""The readiness probe's sans-I/O state (Kubernetes' thresholds) and its settings from the
bootstrap's node metadata (proxy/readiness/probe.py)."""

from __future__ import annotations

import pytest

from protos.errors import ConfigError
from proxy.readiness.probe import HealthChanged, ProbeSettings, ReadinessState, probe_from_metadata

SETTINGS = ProbeSettings("127.0.0.1", 8080, period=2.0, success_threshold=2,
                         failure_threshold=3, initial_delay=1.0)


def test_ready_after_success_threshold_not_ready_after_failure_threshold() -> None:
    state = ReadinessState(SETTINGS)
    state.start(100.0)
    assert not state.due(100.5) and state.due(101.0)  # initialDelaySeconds
    assert state.probed(101.0, None) is None  # one success of two
    assert state.next_at == 103.0  # a period after the probe started
    assert state.probed(103.0, None) == HealthChanged(True)
    assert state.probed(105.0, None) is None  # only changes are reported
    assert state.probed(107.0, "refused") is None
    assert state.probed(109.0, "refused") is None
    assert state.probed(111.0, "timed out") == HealthChanged(False, "timed out")
    assert state.probed(113.0, "refused") is None  # still not ready: nothing new
    assert state.probed(115.0, None) is None
    assert state.probed(117.0, None) == HealthChanged(True)


def test_a_success_resets_the_failures_and_a_failure_the_successes() -> None:
    state = ReadinessState(SETTINGS)
    state.probed(0, None)
    state.probed(1, "refused")
    assert state.probed(2, None) is None  # the successes start again
    assert state.probed(3, None) == HealthChanged(True)
    for now in (4, 5):
        state.probed(now, "refused")
    state.probed(6, None)
    assert state.probed(7, "refused") is None  # failures start again too
    assert state.healthy is True


def test_an_application_that_never_listens_is_reported_not_ready_once() -> None:
    state = ReadinessState(ProbeSettings("127.0.0.1", 1, failure_threshold=2))
    assert state.probed(0, "refused") is None
    assert state.probed(10, "refused") == HealthChanged(False, "refused")
    assert state.probed(20, "refused") is None


def metadata(probe: object, reports: object = True) -> dict:
    return {"health_reports": reports, "readiness_probe": probe}


def test_settings_read_a_kubernetes_readiness_probe() -> None:
    settings = probe_from_metadata(metadata({
        "httpGet": {"port": 8080.0, "path": "/ready"}, "periodSeconds": 0.5,
        "failureThreshold": 2.0, "initialDelaySeconds": 1}))
    assert settings == ProbeSettings("127.0.0.1", 8080, "/ready", initial_delay=1.0,
                                     period=0.5, failure_threshold=2)
    assert probe_from_metadata({}) is None
    tcp = probe_from_metadata(metadata({"tcpSocket": {"port": 9000, "host": "::1"}}))
    assert tcp == ProbeSettings("::1", 9000)


@pytest.mark.parametrize(("raw", "field"), [
    (metadata({"tcpSocket": {"port": 0}}), "readiness_probe.tcpSocket.port"),
    (metadata({"tcpSocket": {"port": 80, "host": "app.local"}}),
     "readiness_probe.tcpSocket.host"),
    (metadata({"tcpSocket": {"port": 80}, "httpGet": {"port": 80}}), "readiness_probe"),
    (metadata({"exec": {"command": ["true"]}}), "readiness_probe.exec"),
    (metadata({"httpGet": {"port": 80, "path": "ready"}}), "readiness_probe.httpGet.path"),
    (metadata({"httpGet": {"port": 80, "scheme": "HTTPS"}}), "readiness_probe.httpGet.scheme"),
    (metadata({"tcpSocket": {"port": 80}, "failureThreshold": 0}),
     "readiness_probe.failureThreshold"),
    (metadata({"tcpSocket": {"port": 80}, "periodSeconds": "10"}),
     "readiness_probe.periodSeconds"),
    (metadata({"tcpSocket": {"port": 80}}, reports=False), "health_reports"),
    ({"health_reports": True}, "health_reports"),
])
def test_bad_settings_are_refused_naming_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        probe_from_metadata(raw)
    assert caught.value.field == f"node.metadata.{field}"
