"""Route-level header manipulation with Envoy's order (docs: "Custom request/response headers").

Levels run least specific last by default: weighted cluster, route, virtual host, route
configuration, so for OVERWRITE the route configuration wins; with
`most_specific_header_mutations_wins` the order reverses. Within a level, removals come
before additions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf.message import Message

from protos.errors import ConfigError
from proxy.codec.headers import Headers
from proxy.http.header_format import FormatContext, HeaderTemplate, parse_header_template
from proxy.http.matchers import refuse_unknown, within

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


_NO_MUTATIONS = HeaderMutations()


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




def apply_additions(headers: Headers, additions: Iterable[HeaderAddition],
                    context: FormatContext) -> None:
    for addition in additions:
        value = addition.value.render(context)
        if not value and not addition.keep_empty_value:
            continue
        action = addition.append_action
        if action == "APPEND_IF_EXISTS_OR_ADD":
            headers.add(addition.name, value)
        elif action == "ADD_IF_ABSENT":
            if addition.name not in headers:
                headers.add(addition.name, value)
        elif action == "OVERWRITE_IF_EXISTS_OR_ADD":
            headers.set(addition.name, value)
        elif addition.name in headers:  # OVERWRITE_IF_EXISTS
            headers.set(addition.name, value)


def ordered_levels(levels_most_specific_first: list[HeaderMutations],
                   most_specific_wins: bool) -> list[HeaderMutations]:
    return list(reversed(levels_most_specific_first)) if most_specific_wins \
        else levels_most_specific_first


def route_levels(config: Any, vhost: Any, route: Any) -> list[HeaderMutations]:
    """The route's, virtual host's and route configuration's header mutations in the order
    they apply (`ordered_levels`), empty ones left out; computed once per route and kept in
    the RouteConfig's lookup cache (the route configuration owns its routes, so the route
    object's identity is a stable key while the configuration lives)."""
    cache: dict[int, list[HeaderMutations]] = config.lookup_cache.setdefault("levels", {})
    levels = cache.get(id(route))
    if levels is None:
        ordered = ordered_levels([route.mutations, vhost.mutations, config.mutations],
                                 config.most_specific_header_mutations_wins)
        levels = cache[id(route)] = [level for level in ordered if level != _NO_MUTATIONS]
    return levels


def apply_request_mutations(headers: Headers, levels: list[HeaderMutations],
                            context: FormatContext) -> None:
    for level in levels:
        for name in level.request_remove:
            headers.remove(name)
        apply_additions(headers, level.request_add, context)


def apply_response_mutations(headers: Headers, levels: list[HeaderMutations],
                             context: FormatContext) -> None:
    for level in levels:
        for name in level.response_remove:
            headers.remove(name)
        apply_additions(headers, level.response_add, context)
