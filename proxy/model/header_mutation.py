"""Route-level header manipulation, the model (Envoy docs: "Custom request/response headers";
route_components.proto request_headers_to_add & co.): translated once at config time into
frozen `HeaderMutations`; `proxy.http.header_mutation` applies them to a request or response.
Values are `%COMMAND%` templates (proxy.model.header_format).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.model.header_format import HeaderTemplate, parse_header_template
from proxy.model.matchers import refuse_unknown, within

AppendAction = Literal[
    "APPEND_IF_EXISTS_OR_ADD", "ADD_IF_ABSENT", "OVERWRITE_IF_EXISTS_OR_ADD", "OVERWRITE_IF_EXISTS"
]


@dataclass(frozen=True)
class HeaderAddition:
    name: str
    value: HeaderTemplate
    append_action: AppendAction = "APPEND_IF_EXISTS_OR_ADD"
    keep_empty_value: bool = False


@dataclass(frozen=True)
class HeaderMutations:
    request_add: tuple[HeaderAddition, ...] = ()
    request_remove: tuple[str, ...] = ()
    response_add: tuple[HeaderAddition, ...] = ()
    response_remove: tuple[str, ...] = ()


NO_MUTATIONS = HeaderMutations()


# --- translation (route config, virtual host, route, weighted cluster, filters) -------------

def translate_header_additions(options: list[Message],
                               field_name: str) -> tuple[HeaderAddition, ...]:
    return tuple(within(f"{field_name}[{i}]", _header_addition, o) for i, o in enumerate(options))


_APPEND_ACTIONS: dict[int, AppendAction] = {
    0: "APPEND_IF_EXISTS_OR_ADD", 1: "ADD_IF_ABSENT", 2: "OVERWRITE_IF_EXISTS_OR_ADD",
    3: "OVERWRITE_IF_EXISTS",
}


def _header_addition(o: Message) -> HeaderAddition:
    refuse_unknown(o, {"header", "append", "append_action", "keep_empty_value"})
    header = o.header  # type: ignore[attr-defined]
    refuse_unknown(header, {"key", "value"})
    action: AppendAction = "APPEND_IF_EXISTS_OR_ADD"
    if o.HasField("append"):  # type: ignore[attr-defined]
        if o.append_action:  # type: ignore[attr-defined]
            raise ConfigError("append and append_action are mutually exclusive", field="append")
        action = "APPEND_IF_EXISTS_OR_ADD" if o.append.value else "OVERWRITE_IF_EXISTS_OR_ADD"  # type: ignore
    else:
        action = _APPEND_ACTIONS[o.append_action]  # type: ignore[attr-defined]
    name = header.key.lower()
    # Envoy refuses to modify pseudo-headers and Host through header manipulation.
    if not name or name.startswith(":") or name == "host":
        raise ConfigError(f"cannot add header {header.key!r}", field="header.key")
    try:
        template = parse_header_template(header.value)
    except ValueError as error:
        raise ConfigError(str(error), field="header.value") from error
    return HeaderAddition(name, template, action, o.keep_empty_value)  # type: ignore[attr-defined]


def translate_mutations(m: Message) -> HeaderMutations:
    return HeaderMutations(
        request_add=translate_header_additions(m.request_headers_to_add,  # type: ignore[attr-defined]
                                      "request_headers_to_add"),
        request_remove=tuple(h.lower() for h in m.request_headers_to_remove),  # type: ignore
        response_add=translate_header_additions(m.response_headers_to_add,  # type: ignore[attr-defined]
                                       "response_headers_to_add"),
        response_remove=tuple(h.lower() for h in m.response_headers_to_remove),  # type: ignore
    )
