"""Envoy's access-log format strings and JSON formats, parsed once and rendered per request.

Rules from https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage:
a command operator is `%NAME%`, `%NAME(arg)%` or either with `:Z` (truncate to Z characters);
anything else is literal text. A value that is not available renders as `-` in text (empty with
`omit_empty_values`) and as `null` in JSON, where a value that is exactly one operator keeps its
type (numbers stay numbers). An unknown operator is a configuration error naming it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protos.errors import ConfigError
from proxy.observability.request_info import RequestInfo, format_address

Value = str | int | None

# Envoy's default format (access_log/usage "Default Format String"); note the trailing newline.
DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n'
)

# Envoy's tokeniser: %([A-Z]|[0-9]|_)+(\([^\)]*\))?(:[0-9]+)?%
_OPERATOR = re.compile(r"%([A-Z0-9_]+)(?:\(([^)]*)\))?(?::([0-9]+))?%")


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _text(value: str) -> str | None:
    return value or None


_SIMPLE: dict[str, Callable[[RequestInfo], Value]] = {
    "PROTOCOL": lambda i: _text(i.protocol),
    "RESPONSE_CODE": lambda i: i.response_code or 0,
    "RESPONSE_CODE_DETAILS": lambda i: _text(i.response_code_details),
    # Envoy renders "no flags" as the string "-", in JSON too (checked against Envoy 1.40).
    "RESPONSE_FLAGS": lambda i: i.response_flags_text,
    "DURATION": lambda i: _ms(i.duration),
    "REQUEST_DURATION": lambda i: _ms(i.request_duration),
    "RESPONSE_DURATION": lambda i: _ms(i.response_duration),
    "BYTES_RECEIVED": lambda i: i.bytes_received,
    "BYTES_SENT": lambda i: i.bytes_sent,
    "UPSTREAM_HOST": lambda i: _text(i.upstream_host),
    "UPSTREAM_CLUSTER": lambda i: _text(i.upstream_cluster),
    "UPSTREAM_LOCAL_ADDRESS": lambda i: _text(i.upstream_local_address),
    # Envoy logs it with "_" for spaces ("delayed_connect_error:_Connection_refused").
    "UPSTREAM_TRANSPORT_FAILURE_REASON": lambda i: _text(
        "_".join(i.upstream_transport_failure_reason.split(" "))),
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": lambda i: i.attempt_count,
    "ROUTE_NAME": lambda i: _text(i.route_name),
    "VIRTUAL_CLUSTER_NAME": lambda i: _text(i.virtual_cluster_name),
    "DOWNSTREAM_REMOTE_ADDRESS": lambda i: _text(format_address(i.downstream_remote_address)),
    "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": lambda i: _text(
        format_address(i.downstream_remote_address, with_port=False)),
    "DOWNSTREAM_REMOTE_PORT": lambda i: (
        i.downstream_remote_address[1] if i.downstream_remote_address else None),
    "DOWNSTREAM_LOCAL_ADDRESS": lambda i: _text(format_address(i.downstream_local_address)),
    "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT": lambda i: _text(
        format_address(i.downstream_local_address, with_port=False)),
    "DOWNSTREAM_LOCAL_PORT": lambda i: (
        i.downstream_local_address[1] if i.downstream_local_address else None),
    "REQUESTED_SERVER_NAME": lambda i: _text(i.requested_server_name),
    "CONNECTION_ID": lambda i: i.connection_id,
    "CONNECTION_TERMINATION_DETAILS": lambda i: _text(i.connection_termination_details),
    "TRACE_ID": lambda i: _text(i.trace_id),
}

_HOSTNAME = socket.gethostname()


@dataclass(frozen=True, slots=True)
class Operator:
    """One parsed command operator; `resolve` gives its typed value for a request."""

    name: str
    argument: str | None
    max_length: int | None
    resolver: Callable[[RequestInfo], Value]

    def resolve(self, info: RequestInfo) -> Value:
        value = self.resolver(info)
        if self.max_length is not None and isinstance(value, str):
            return value[: self.max_length]
        return value


def _header_resolver(argument: str, where: str) -> Callable[[RequestInfo], Value]:
    """`%REQ(X?Y)%`: header X, else header Y (Envoy's alternative-header syntax)."""
    main, _, alternative = argument.partition("?")
    names = tuple(n.strip().lower() for n in (main, alternative) if n.strip())

    def resolve(info: RequestInfo) -> Value:
        for name in names:
            if where == "request":
                found = info.request_header(name)
            elif where == "response":
                found = info.response_headers.get(name)
            else:
                found = info.response_trailers.get(name)
            if found is not None:
                return found
        return None

    return resolve


_HEADER_SOURCES = {
    "REQ": "request", "REQUEST_HEADER": "request",
    "RESP": "response", "RESPONSE_HEADER": "response",
    "TRAILER": "trailer", "RESPONSE_TRAILER": "trailer",
}


def _build_resolver(name: str, argument: str | None) -> Callable[[RequestInfo], Value]:
    if name in _HEADER_SOURCES:
        if not argument:
            raise ConfigError(f"operator %{name}% needs a header name: %{name}(X-NAME)%")
        return _header_resolver(argument, _HEADER_SOURCES[name])
    if name == "START_TIME":
        time_format = argument or None
        return lambda info: format_start_time(info.start_time, time_format)
    if name == "ENVIRONMENT":
        if not argument:
            raise ConfigError("operator %ENVIRONMENT% needs a variable name")
        value = os.environ.get(argument)  # read once, like Envoy does at config load
        return lambda info: value
    if name == "HOSTNAME":
        return lambda info: _HOSTNAME
    resolver = _SIMPLE.get(name)
    if resolver is None:
        raise ConfigError(f"access log operator %{name}% is not supported by Pointsman")
    return resolver


def parse_operator(match: re.Match[str]) -> Operator:
    name, argument, length = match.group(1), match.group(2), match.group(3)
    return Operator(name, argument, int(length) if length else None,
                    _build_resolver(name, argument))


Segment = str | Operator


def parse_format(text: str) -> tuple[Segment, ...]:
    """Split a format string into literal text and operators; unknown operators raise."""
    segments: list[Segment] = []
    position = 0
    for match in _OPERATOR.finditer(text):
        if match.start() > position:
            segments.append(text[position:match.start()])
        segments.append(parse_operator(match))
        position = match.end()
    if position < len(text):
        segments.append(text[position:])
    return tuple(segments)


@dataclass(frozen=True, slots=True)
class TextFormatter:
    """A parsed format string; `render` is one pass over the segments."""

    segments: tuple[Segment, ...]
    omit_empty_values: bool = False

    @classmethod
    def parse(cls, text: str, *, omit_empty_values: bool = False) -> TextFormatter:
        return cls(parse_format(text), omit_empty_values)

    def render(self, info: RequestInfo) -> str:
        missing = "" if self.omit_empty_values else "-"
        parts = []
        for segment in self.segments:
            if isinstance(segment, str):
                parts.append(segment)
            else:
                value = segment.resolve(info)
                parts.append(missing if value is None or value == "" else str(value))
        return "".join(parts)


@dataclass(frozen=True, slots=True)
class JsonFormatter:
    """Envoy's `json_format`: a (nested) dict whose string values are format strings.

    One JSON object per line. A value that is exactly one operator keeps its type; missing
    values are `null`, or the key is left out with `omit_empty_values`.
    """

    template: Any  # dict mirroring the Struct, leaves are TextFormatter / Operator / constants
    omit_empty_values: bool = False
    sort_properties: bool = False

    @classmethod
    def parse(cls, struct: dict[str, Any], *, omit_empty_values: bool = False,
              sort_properties: bool = False) -> JsonFormatter:
        return cls(_compile_json(struct, ""), omit_empty_values, sort_properties)

    def render(self, info: RequestInfo) -> str:
        rendered = _render_json(self.template, info, self.omit_empty_values)
        return json.dumps(rendered, separators=(",", ":"), sort_keys=self.sort_properties) + "\n"


def _compile_json(value: Any, path: str) -> Any:
    if isinstance(value, dict):
        return {key: _compile_json(item, f"{path}.{key}" if path else key)
                for key, item in value.items()}
    if isinstance(value, list):
        raise ConfigError("lists are not supported in json_format", field=path)
    if isinstance(value, str):
        try:
            segments = parse_format(value)
        except ConfigError as error:
            raise error.within(field=path) from error
        if len(segments) == 1 and isinstance(segments[0], Operator):
            return segments[0]
        return TextFormatter(segments)
    return value  # numbers, booleans, null pass through


def _render_json(template: Any, info: RequestInfo, omit_empty: bool) -> Any:
    if isinstance(template, dict):
        out = {}
        for key, item in template.items():
            value = _render_json(item, info, omit_empty)
            if omit_empty and (value is None or value == ""):
                continue
            out[key] = value
        return out
    if isinstance(template, Operator):
        return template.resolve(info)
    if isinstance(template, TextFormatter):
        return template.render(info)
    return template


_TIME_SPECIFIER = re.compile(r"%([1-9]?)f|%s|%%|%[A-Za-z]")
_DEFAULT_TIME_CACHE: dict[int, str] = {}


def format_start_time(epoch: float, time_format: str | None) -> str:
    """`%START_TIME%` in UTC: Envoy's default `2016-04-15T20:17:00.310Z`, or a strftime format
    with Envoy's extra specifiers `%s` (epoch seconds) and `%[1-9]f` / `%f` (fractional digits,
    9 by default)."""
    whole = int(epoch)
    nanos = round((epoch - whole) * 1e6) * 1000  # a float epoch is good to ~0.2 us
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    if time_format is None:
        prefix = _DEFAULT_TIME_CACHE.get(whole)
        if prefix is None:
            if len(_DEFAULT_TIME_CACHE) > 64:
                _DEFAULT_TIME_CACHE.clear()
            prefix = _DEFAULT_TIME_CACHE[whole] = time.strftime(
                "%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        return f"{prefix}.{nanos // 1_000_000:03d}Z"
    utc = time.gmtime(whole)

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "%s":
            return str(whole)
        if token.endswith("f") and match.group(1) is not None:
            digits = int(match.group(1) or 9)
            return f"{nanos:09d}"[:digits]
        return time.strftime(token, utc)

    return _TIME_SPECIFIER.sub(replace, time_format)
