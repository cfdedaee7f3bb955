"""The HTTP connection manager's `local_reply_config` (Envoy doc: configuration/http/
http_conn_man/local_reply), the part we take: mappers whose filter is a
`response_flag_filter`, adding `headers_to_add` to a local reply whose stream has one of the
filter's response flags (any flag when the list is empty). The first mapper that matches
applies, as Envoy's LocalReplyImpl::rewrite. Mappers that rewrite the status or the body, other
filters, and `body_format` are refused by name. Translated once at config time; `mapped` runs
on each local reply (proxy.http.active_stream.send_local_reply).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from protos.errors import ConfigError, unsupported
from proxy.codec.headers import Headers
from proxy.http.header_mutation import apply_additions
from proxy.model.header_format import FormatContext
from proxy.model.header_mutation import HeaderAddition, translate_header_additions
from proxy.model.matchers import refuse_unknown, within


@dataclass(frozen=True)
class LocalReplyMapper:
    flags: frozenset[str]  # empty: any response flag
    headers_to_add: tuple[HeaderAddition, ...]

    def matches(self, flags: Sequence[str]) -> bool:
        return bool(flags) and (not self.flags or not self.flags.isdisjoint(flags))


def translate_local_reply_config(message: Message) -> tuple[LocalReplyMapper, ...]:
    refuse_unknown(message, {"mappers"})
    m: Any = message
    return tuple(within(f"mappers[{index}]", _mapper, mapper)
                 for index, mapper in enumerate(m.mappers))


def _mapper(message: Message) -> LocalReplyMapper:
    refuse_unknown(message, {"filter", "headers_to_add"})
    m: Any = message
    kind = m.filter.WhichOneof("filter_specifier")
    if kind != "response_flag_filter":
        raise unsupported("filter", kind or "none")
    additions = translate_header_additions(list(m.headers_to_add), "headers_to_add")
    for index, addition in enumerate(additions):
        if not addition.value.is_literal:
            raise ConfigError("only literal values are supported",
                              field=f"headers_to_add[{index}].header.value")
    return LocalReplyMapper(frozenset(m.filter.response_flag_filter.flags), additions)


def mapped(mappers: Sequence[LocalReplyMapper], flags: Sequence[str], headers: Headers,
           context: FormatContext) -> Headers:
    """The local reply's headers with the first matching mapper's additions (applied as the
    route's header additions are, append_action and keep_empty_value included)."""
    mapper = next((item for item in mappers if item.matches(flags)), None)
    if mapper is None:
        return headers
    out = headers.copy()
    apply_additions(out, mapper.headers_to_add, context)
    return out
