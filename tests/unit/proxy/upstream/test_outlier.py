"""Outlier detection with explicit `now`: consecutive errors, ejection time, max percent."""

from __future__ import annotations

import random

from proxy.model.health import OutlierDetection
from proxy.stats import Stats
from proxy.upstream.health.outlier import OutlierDetector
from proxy.upstream.host import Host, Result
from tests.unit.proxy.upstream.builders import hosts

P = "cluster.c.outlier_detection."


def _detector(config: OutlierDetection, count: int = 10) -> tuple[OutlierDetector, list[Host],
                                                                   Stats, list[tuple[Host, bool]]]:
    stats = Stats()
    changes: list[tuple[Host, bool]] = []
    detector = OutlierDetector(config, lambda h, e: changes.append((h, e)), random.Random(1),
                               stats, "cluster.c.")
    group = hosts(count)
    detector.set_host_count(count)
    return detector, group, stats, changes


def test_consecutive_5xx_ejects_at_threshold() -> None:
    detector, group, stats, changes = _detector(OutlierDetection(consecutive_5xx=3))
    for _ in range(2):
        detector.report_http_status(group[0], 500, 0.0)
    assert changes == []
    detector.report_http_status(group[0], 500, 0.0)
    assert changes == [(group[0], True)]
    assert stats.gauge(P + "ejections_active").value == 1
    assert stats.counter(P + "ejections_enforced_consecutive_5xx").value == 1


def test_success_resets_consecutive_count() -> None:
    detector, group, _, changes = _detector(OutlierDetection(consecutive_5xx=3))
    for _ in range(5):
        detector.report_http_status(group[0], 503, 0.0)
        detector.report_http_status(group[0], 503, 0.0)
        detector.report_http_status(group[0], 200, 0.0)
    assert changes == []


def test_gateway_failures_detected_but_not_enforced_by_default() -> None:
    detector, group, stats, changes = _detector(OutlierDetection(consecutive_5xx=100))
    for _ in range(5):
        detector.report_http_status(group[0], 502, 0.0)
    assert changes == []
    assert stats.counter(P + "ejections_detected_consecutive_gateway_failure").value == 1
    enforcing = OutlierDetection(consecutive_5xx=100, enforcing_consecutive_gateway_failure=100)
    detector, group, _, changes = _detector(enforcing)
    for _ in range(5):
        detector.report_http_status(group[0], 504, 0.0)
    assert changes == [(group[0], True)]


def test_connect_failures_count_as_5xx_without_split() -> None:
    detector, group, _, changes = _detector(OutlierDetection(consecutive_5xx=2))
    detector.report_result(group[0], Result.LOCAL_ORIGIN_CONNECT_FAILED, 0.0)
    detector.report_result(group[0], Result.LOCAL_ORIGIN_TIMEOUT, 0.0)
    assert changes == [(group[0], True)]


def test_split_mode_counts_local_origin_separately() -> None:
    config = OutlierDetection(split_external_local_origin_errors=True, consecutive_5xx=2,
                              consecutive_local_origin_failure=3)
    detector, group, stats, changes = _detector(config)
    detector.report_result(group[0], Result.LOCAL_ORIGIN_CONNECT_FAILED, 0.0)
    detector.report_result(group[0], Result.LOCAL_ORIGIN_CONNECT_FAILED, 0.0)
    assert changes == []  # not counted as 5xx in split mode
    detector.report_result(group[0], Result.LOCAL_ORIGIN_CONNECT_SUCCESS, 0.0)
    for _ in range(3):
        detector.report_result(group[0], Result.LOCAL_ORIGIN_TIMEOUT, 0.0)
    assert changes == [(group[0], True)]
    assert stats.counter(P + "ejections_enforced_consecutive_local_origin_failure").value == 1


def test_ejection_time_grows_with_ejections_and_is_capped() -> None:
    config = OutlierDetection(consecutive_5xx=1, interval=1.0, base_ejection_time=10.0,
                              max_ejection_time=25.0)
    detector, group, _, changes = _detector(config)
    host = group[0]
    now = 0.0
    durations = []
    for _ in range(4):
        detector.report_http_status(host, 500, now)
        ejected_at = now
        while True:
            now += 1.0
            detector.tick(now)
            if changes[-1] == (host, False):
                break
        durations.append(now - ejected_at)
    # base * backoff: 10, 20, then 30 and 40 capped at max_ejection_time.
    assert durations == [10.0, 20.0, 25.0, 25.0]
    # The backoff stops growing once backoff * base >= max + base (4 * 10 >= 35).
    assert detector.monitors[host].backoff == 4


def test_backoff_decreases_while_host_stays_healthy() -> None:
    config = OutlierDetection(consecutive_5xx=1, interval=1.0, base_ejection_time=10.0)
    detector, group, _, changes = _detector(config)
    host = group[0]
    detector.report_http_status(host, 500, 0.0)
    detector.report_http_status(host, 500, 0.0)  # already ejected: ignored
    for t in range(1, 11):
        detector.tick(float(t))
    assert changes[-1] == (host, False)
    assert detector.monitors[host].backoff == 1
    detector.tick(11.0)
    assert detector.monitors[host].backoff == 0
    detector.report_http_status(host, 500, 12.0)
    assert detector.ejection_duration(detector.monitors[host]) == 10.0


def test_max_ejection_percent_limits_ejections() -> None:
    detector, group, stats, changes = _detector(
        OutlierDetection(consecutive_5xx=1, max_ejection_percent=20), count=10)
    for host in group[:4]:
        detector.report_http_status(host, 500, 0.0)
    assert [h for h, ejected in changes if ejected] == group[:2]
    assert stats.counter(P + "ejections_overflow").value == 2


def test_one_host_is_ejected_even_under_a_small_percent() -> None:
    detector, group, _, changes = _detector(
        OutlierDetection(consecutive_5xx=1, max_ejection_percent=10), count=3)
    detector.report_http_status(group[0], 500, 0.0)
    detector.report_http_status(group[1], 500, 0.0)
    assert changes == [(group[0], True)]


def test_enforcing_zero_detects_without_ejecting() -> None:
    detector, group, stats, changes = _detector(
        OutlierDetection(consecutive_5xx=1, enforcing_consecutive_5xx=0))
    detector.report_http_status(group[0], 500, 0.0)
    assert changes == []
    assert stats.counter(P + "ejections_detected_consecutive_5xx").value == 1


def test_success_rate_ejects_the_outlier() -> None:
    detector, group, stats, changes = _detector(
        OutlierDetection(consecutive_5xx=1000, success_rate_request_volume=10), count=6)
    for index, host in enumerate(group):
        for request in range(20):
            failed = index == 0 and request % 2 == 0  # host 0 at 50%, the rest at 100%
            detector.report_http_status(host, 500 if failed else 200, 0.0)
    detector.tick(10.0)
    assert changes == [(group[0], True)]
    assert stats.counter(P + "ejections_enforced_success_rate").value == 1


def test_failure_percentage_when_enforced() -> None:
    detector, group, _, changes = _detector(
        OutlierDetection(consecutive_5xx=1000, enforcing_success_rate=0,
                         enforcing_failure_percentage=100, failure_percentage_request_volume=10,
                         max_ejection_percent=100), count=5)
    for index, host in enumerate(group):
        for request in range(10):
            failed = index < 2 and request < 9
            detector.report_http_status(host, 503 if failed else 200, 0.0)
    detector.tick(10.0)
    assert sorted((h.address for h, e in changes if e)) == ["10.0.0.1", "10.0.0.2"]


def test_active_health_check_success_unejects() -> None:
    detector, group, _, changes = _detector(OutlierDetection(consecutive_5xx=1))
    detector.report_http_status(group[0], 500, 0.0)
    detector.active_health_check_succeeded(group[0])
    assert changes == [(group[0], True), (group[0], False)]
    assert detector.ejections_active == 0


def test_split_mode_request_success_also_clears_local_origin_failures() -> None:
    config = OutlierDetection(split_external_local_origin_errors=True,
                              consecutive_local_origin_failure=2)
    detector, group, _, changes = _detector(config)
    detector.report_result(group[0], Result.LOCAL_ORIGIN_TIMEOUT, 0.0)
    detector.report_result(group[0], Result.EXT_ORIGIN_REQUEST_SUCCESS, 0.0)
    detector.report_result(group[0], Result.LOCAL_ORIGIN_TIMEOUT, 0.0)
    assert changes == []
    detector.report_result(group[0], Result.LOCAL_ORIGIN_CONNECT_FAILED, 0.0)
    assert changes == [(group[0], True)]


def test_failure_percentage_detected_but_not_enforced_by_default() -> None:
    detector, group, stats, changes = _detector(
        OutlierDetection(consecutive_5xx=1000, enforcing_success_rate=0,
                         failure_percentage_request_volume=10), count=5)
    for host in group:
        for _ in range(10):
            detector.report_http_status(host, 503 if host is group[0] else 200, 0.0)
    detector.tick(10.0)
    assert changes == []
    assert stats.counter(P + "ejections_detected_failure_percentage").value == 1
