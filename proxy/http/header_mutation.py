"""Route-level header manipulation with Envoy's order (docs: "Custom request/response headers").

Levels run least specific last by default: weighted cluster, route, virtual host, route
configuration, so for OVERWRITE the route configuration wins; with
`most_specific_header_mutations_wins` the order reverses. Within a level, removals come
before additions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from proxy.codec.headers import Headers
from proxy.model.header_format import FormatContext
from proxy.model.header_mutation import NO_MUTATIONS, HeaderAddition, HeaderMutations


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
        levels = cache[id(route)] = [level for level in ordered if level != NO_MUTATIONS]
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
