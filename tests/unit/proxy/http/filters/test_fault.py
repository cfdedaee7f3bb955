"""The fault filter as a plain object: settings, header-controlled faults, active faults."""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any

import pytest
from envoy.extensions.filters.http.fault.v3 import fault_pb2

from protos.errors import ConfigError
from protos.loader import parse_message
from proxy.http.filter import HttpStream, LocalReply
from proxy.http.filters.fault import FaultFactory, FaultFilter
from proxy.http.filters.fault_config import parse_unsigned, translate_fault
from proxy.stats import Stats
from tests.unit.proxy.http.routes import one_host, request

ALL = {"numerator": 100}


def _settings(**fields: Any) -> Any:
    return translate_fault(parse_message(fields, fault_pb2.HTTPFault))


def _make(stats: Stats, **fields: Any) -> Any:
    return FaultFactory().create(_settings(**fields), SimpleNamespace(stats=stats),  # type: ignore[arg-type]
                                 stat_prefix="p", rng=random.Random(1))


def _stream(*headers: tuple[str, str], config: Any = None) -> HttpStream:
    return HttpStream(request("/", headers=headers), ("10.0.0.1", 1), ("10.0.0.2", 80), 1,
                      route_config=config)


@pytest.mark.parametrize(("text", "value"), [
    ("42", 42), (" +42 ", 42), ("-1", None), ("4x", None), ("", None), ("٣", None),
    (str(1 << 64), None), (None, None),
])
def test_header_numbers_parse_as_absl_simple_atoi(text: str | None, value: int | None) -> None:
    assert parse_unsigned(text) == value


def test_settings_translation() -> None:
    settings = _settings(delay={"fixed_delay": "0.0015s", "percentage": ALL},
                         abort={"header_abort": {}, "percentage": {"numerator": 30}},
                         delay_percent_runtime="a.b", max_active_faults=3)
    assert settings.delay.fixed_ms == 1  # whole milliseconds, as Envoy reads it
    assert settings.abort.from_headers and settings.max_active_faults == 3
    # The header lowers the configured percentage, never raises it.
    headers = request("/", headers=(("x-envoy-fault-abort-request-percentage", "80"),)).headers
    assert settings.abort.percentage_for(headers).numerator == 30
    assert _settings(abort={"http_status": 503}).abort.percentage.numerator == 0


@pytest.mark.parametrize(("fields", "field"), [
    ({"filter_metadata": {"fields": {"a": {"string_value": "b"}}}}, "filter_metadata"),
    ({"abort": {"http_status": 100}}, "abort.http_status"),
    ({"abort": {"percentage": ALL}}, "abort.error_type"),
    ({"delay": {"fixed_delay": "0s"}}, "delay.fixed_delay"),
    ({"response_rate_limit": {"fixed_limit": {"limit_kbps": 0}}},
     "response_rate_limit.fixed_limit.limit_kbps"),
])
def test_refused_by_name(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _settings(**fields)
    assert caught.value.field == field


def test_abort_reply_and_stats() -> None:
    stats = Stats()
    make = _make(stats, abort={"header_abort": {}, "percentage": ALL})
    stream = _stream(("x-envoy-fault-abort-grpc-request", "14"),
                     ("x-envoy-downstream-service-cluster", "web"))
    reply = make().on_request_headers(stream)
    assert isinstance(reply, LocalReply)
    assert (reply.status, reply.grpc_status, reply.body, reply.flag, reply.details) == (
        200, 14, "fault filter abort", "FI", "fault_filter_abort")
    assert stats.counter("http.p.fault.aborts_injected").value == 1
    assert stats.counter("http.p.fault.web.aborts_injected").value == 1
    assert make().on_request_headers(_stream()) is None  # no header, no abort


async def test_delay_holds_one_active_fault_until_it_ends() -> None:
    stats = Stats()
    make = _make(stats, delay={"header_delay": {}, "percentage": ALL}, max_active_faults=1)
    first, second = make(), make()
    held = _stream(("x-envoy-fault-delay-request", "20"))
    waiting = first.on_request_headers(held)
    assert asyncio.iscoroutine(waiting) and held.response_flags == ["DI"]
    gauge = stats.gauge("http.p.fault.active_faults")
    assert gauge.value == 1
    # At the limit the second request is not delayed, and the overflow is counted.
    assert second.on_request_headers(_stream(("x-envoy-fault-delay-request", "20"))) is None
    assert stats.counter("http.p.fault.faults_overflow").value == 1
    assert await waiting is None
    assert gauge.value == 0  # the delay is over: the fault is no longer active
    first.on_complete(held)
    assert gauge.value == 0


async def test_a_cancelled_delay_gives_the_active_fault_back() -> None:
    stats = Stats()
    fault = _make(stats, delay={"fixed_delay": "10s", "percentage": ALL})()
    stream = _stream()
    task = asyncio.ensure_future(fault.on_request_headers(stream))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fault.on_complete(stream)
    assert stats.gauge("http.p.fault.active_faults").value == 0


def test_per_route_settings_replace_the_filters() -> None:
    config = one_host({"match": {"prefix": "/"}, "route": {"cluster": "c"},
                       "typed_per_filter_config": {"fault": {
                           "@type": "type.googleapis.com/envoy.extensions.filters.http.fault"
                                    ".v3.HTTPFault",
                           "abort": {"http_status": 418, "percentage": ALL}}}})
    stats = Stats()
    make = FaultFactory().create(_settings(abort={"http_status": 500, "percentage": ALL}),
                                 SimpleNamespace(stats=stats),  # type: ignore[arg-type]
                                 stat_prefix="p", name="fault")
    reply = make().on_request_headers(_stream(config=config))
    assert isinstance(reply, LocalReply) and reply.status == 418
    assert isinstance(make(), FaultFilter)
