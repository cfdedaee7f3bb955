"""String, header and query-parameter matchers (envoy.type.matcher.v3 and RouteMatch parts).

Frozen models translated once from protobuf, used by route matching (proxy.http.routing) and
by the rbac and health_check filters. Regexes are full matches, as RE2 in Envoy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.model.fields import reject_unsupported

StringKind = Literal["exact", "prefix", "suffix", "contains", "regex"]


def refuse_unknown(message: Message, supported: set[str]) -> None:
    """Reject every set field outside `supported`, naming it (we never ignore config)."""
    reject_unsupported(message, supported)


def within(prefix: str, call: Callable[..., Any], *args: Any) -> Any:
    """`call(*args)`, with `prefix` added to the field path of a ConfigError."""
    try:
        return call(*args)
    except ConfigError as error:
        raise error.within(field=prefix) from error


@dataclass(frozen=True)
class StringMatcher:
    """envoy.type.matcher.v3.StringMatcher; regexes are full matches, as RE2 in Envoy."""

    kind: StringKind
    value: str
    ignore_case: bool = False
    pattern: re.Pattern[str] | None = None

    def matches(self, candidate: str) -> bool:
        if self.kind == "regex":
            assert self.pattern is not None
            return self.pattern.fullmatch(candidate) is not None
        value = self.value
        if self.ignore_case:
            value, candidate = value.lower(), candidate.lower()
        if self.kind == "exact":
            return candidate == value
        if self.kind == "prefix":
            return candidate.startswith(value)
        if self.kind == "suffix":
            return candidate.endswith(value)
        return value in candidate


@dataclass(frozen=True)
class HeaderMatcher:
    """RouteMatch.headers: `string` is None for present_match and range_match."""

    name: str
    string: StringMatcher | None = None
    present: bool | None = None
    int_range: tuple[int, int] | None = None  # [start, end)
    invert: bool = False
    treat_missing_as_empty: bool = False


@dataclass(frozen=True)
class QueryParameterMatcher:
    name: str
    string: StringMatcher | None = None  # None: present_match


def translate_regex(matcher: Message, field_name: str) -> re.Pattern[str]:
    refuse_unknown(matcher, {"google_re2", "regex"})
    try:
        return re.compile(matcher.regex)  # type: ignore[attr-defined]
    except re.error as error:
        raise ConfigError(f"invalid regex: {error}", field=f"{field_name}.regex") from error


def _string_matcher(m: Message) -> StringMatcher:
    refuse_unknown(m, {"exact", "prefix", "suffix", "safe_regex", "contains", "ignore_case"})
    kind = m.WhichOneof("match_pattern")
    ignore_case = bool(m.ignore_case)  # type: ignore[attr-defined]
    if kind == "safe_regex":
        if ignore_case:
            raise unsupported("ignore_case", "not applicable to safe_regex")
        return StringMatcher("regex", "", pattern=translate_regex(m.safe_regex, "safe_regex"))  # type: ignore
    if kind is None:
        raise ConfigError("a string matcher needs a pattern", field="match_pattern")
    value = getattr(m, kind)
    if kind in ("prefix", "suffix", "contains") and not value:
        raise ConfigError("must not be empty", field=kind)
    return StringMatcher(kind, value, ignore_case)  # type: ignore[arg-type]


def _header_matcher(h: Message) -> HeaderMatcher:
    refuse_unknown(h, {"name", "exact_match", "safe_regex_match", "range_match", "present_match",
                        "prefix_match", "suffix_match", "contains_match", "string_match",
                        "invert_match", "treat_missing_header_as_empty"})
    kind = h.WhichOneof("header_match_specifier")
    string: StringMatcher | None = None
    present: bool | None = None
    int_range = None
    legacy = {"exact_match": "exact", "prefix_match": "prefix", "suffix_match": "suffix",
              "contains_match": "contains"}
    if kind in legacy:
        string = StringMatcher(legacy[kind], getattr(h, kind))  # type: ignore[arg-type]
    elif kind == "safe_regex_match":
        string = StringMatcher("regex", "", pattern=translate_regex(h.safe_regex_match,  # type: ignore
                                                          "safe_regex_match"))
    elif kind == "string_match":
        string = within("string_match", _string_matcher, h.string_match)  # type: ignore
    elif kind == "range_match":
        int_range = (h.range_match.start, h.range_match.end)  # type: ignore[attr-defined]
    elif kind == "present_match":
        present = h.present_match  # type: ignore[attr-defined]
    else:
        present = True  # no specifier: Envoy matches on presence
    return HeaderMatcher(
        name=h.name.lower(),  # type: ignore[attr-defined]
        string=string, present=present, int_range=int_range,
        invert=h.invert_match,  # type: ignore[attr-defined]
        treat_missing_as_empty=h.treat_missing_header_as_empty,  # type: ignore[attr-defined]
    )


def _query_matcher(q: Message) -> QueryParameterMatcher:
    refuse_unknown(q, {"name", "string_match", "present_match"})
    if q.HasField("string_match"):  # type: ignore[attr-defined]
        return QueryParameterMatcher(q.name, within("string_match", _string_matcher,  # type: ignore
                                                     q.string_match))  # type: ignore
    return QueryParameterMatcher(q.name)  # type: ignore[attr-defined]



def translate_header_matcher(message: Message) -> HeaderMatcher:
    return _header_matcher(message)


def translate_string_matcher(message: Message) -> StringMatcher:
    return _string_matcher(message)


def translate_query_matcher(message: Message) -> QueryParameterMatcher:
    return _query_matcher(message)
