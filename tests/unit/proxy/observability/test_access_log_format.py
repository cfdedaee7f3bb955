"""Envoy access-log format strings and JSON formats (access_log/usage in Envoy's docs)."""

from __future__ import annotations

import json

import pytest

from protos.errors import ConfigError
from proxy.observability.access_log.format import (
    DEFAULT_FORMAT,
    JsonFormatter,
    TextFormatter,
    format_start_time,
)
from proxy.observability.request_info import HeaderMap, RequestInfo

# 2016-04-15T20:17:00.310Z, the example in Envoy's docs.
START = 1460751420.310


def sample(**changes: object) -> RequestInfo:
    fields: dict[str, object] = dict(
        start_time=START, duration=0.226, method="POST", path="/api/v1/locations",
        authority="locations", protocol="HTTP/2", response_code=204, bytes_received=154,
        bytes_sent=0, upstream_host="10.0.2.1:80", upstream_cluster="locations",
        route_name="r1", downstream_remote_address=("10.0.35.28", 51234),
        request_headers=HeaderMap([("X-Forwarded-For", "10.0.35.28"), ("user-agent", "nsq2http"),
                                   ("x-request-id", "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2")]),
        response_headers=HeaderMap([("x-envoy-upstream-service-time", "100")]),
    )
    fields.update(changes)
    return RequestInfo(**fields)  # type: ignore[arg-type]


def test_default_format_matches_envoys_documented_example() -> None:
    line = TextFormatter.parse(DEFAULT_FORMAT).render(sample())
    assert line == (
        '[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 '
        '"10.0.35.28" "nsq2http" "cc21d9b0-cf5c-432b-8c7e-98aeb7988cd2" "locations" '
        '"10.0.2.1:80"\n')


def test_missing_values_are_dashes_and_response_code_zero() -> None:
    info = RequestInfo(start_time=START)
    line = TextFormatter.parse("%RESPONSE_CODE% %DURATION% %UPSTREAM_HOST% %REQ(X-A)%").render(
        info)
    assert line == "0 - - -"


def test_alternative_header_and_truncation() -> None:
    formatter = TextFormatter.parse("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH):5%|%REQ(:METHOD)%")
    assert formatter.render(sample()) == "/api/|POST"
    with_original = sample(request_headers=HeaderMap([("x-envoy-original-path", "/orig")]))
    assert formatter.render(with_original) == "/orig|POST"


def test_request_header_alias_and_response_flags() -> None:
    formatter = TextFormatter.parse(
        "%REQUEST_HEADER(USER-AGENT)% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %ROUTE_NAME% "
        "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%")
    line = formatter.render(sample(response_flags=("UF", "URX")))
    assert line == "nsq2http UF,URX locations r1 10.0.35.28:51234 10.0.35.28"


def test_ipv6_address_is_bracketed() -> None:
    line = TextFormatter.parse("%DOWNSTREAM_REMOTE_ADDRESS%").render(
        sample(downstream_remote_address=("::1", 80)))
    assert line == "[::1]:80"


def test_start_time_strftime_and_envoy_specifiers() -> None:
    assert format_start_time(START, "%Y/%m/%d %H:%M:%S") == "2016/04/15 20:17:00"
    assert format_start_time(START, "%s") == "1460751420"
    assert format_start_time(START, "%3f") == "310"
    assert format_start_time(START, "%f") == "310000000"
    assert format_start_time(START, "%%%Y") == "%2016"
    line = TextFormatter.parse("%START_TIME(%s.%3f)%").render(sample())
    assert line == "1460751420.310"


def test_percent_without_operator_is_literal() -> None:
    assert TextFormatter.parse("100% done %bad").render(sample()) == "100% done %bad"


def test_unknown_operator_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match="NO_SUCH_THING"):
        TextFormatter.parse("%NO_SUCH_THING%")
    with pytest.raises(ConfigError, match="REQ"):
        TextFormatter.parse("%REQ%")


def test_omit_empty_values_in_text() -> None:
    formatter = TextFormatter.parse("[%UPSTREAM_HOST%]", omit_empty_values=True)
    assert formatter.render(RequestInfo(start_time=START)) == "[]"


def test_json_format_keeps_types_and_nests() -> None:
    formatter = JsonFormatter.parse({
        "code": "%RESPONSE_CODE%", "bytes": "%BYTES_RECEIVED%", "host": "%UPSTREAM_HOST%",
        "line": "%REQ(:METHOD)% %REQ(:PATH)%", "nested": {"cluster": "%UPSTREAM_CLUSTER%"},
        "constant": 7.0, "missing": "%REQ(X-NONE)%",
    })
    record = json.loads(formatter.render(sample()))
    assert record == {"code": 204, "bytes": 154, "host": "10.0.2.1:80",
                      "line": "POST /api/v1/locations", "nested": {"cluster": "locations"},
                      "constant": 7.0, "missing": None}


def test_json_omit_empty_values_drops_keys() -> None:
    formatter = JsonFormatter.parse({"host": "%UPSTREAM_HOST%", "code": "%RESPONSE_CODE%"},
                                    omit_empty_values=True)
    assert json.loads(formatter.render(RequestInfo(start_time=START))) == {"code": 0}


def test_json_unknown_operator_names_the_key() -> None:
    with pytest.raises(ConfigError) as caught:
        JsonFormatter.parse({"outer": {"bad": "%NOPE%"}})
    assert caught.value.field == "outer.bad"
