"""udp_proxy's `matcher` (xds.type.matcher.v3.Matcher, Envoy's unified matching API) -> a
frozen routing tree: which cluster a client's datagrams go to.

Envoy doc: intro/arch_overview/advanced/matching/matching_api and the udp_proxy `matcher`
field (api/envoy/extensions/filters/udp/udp_proxy/v3/udp_proxy.proto). Supported:

- inputs `envoy.extensions.matching.common_inputs.network.v3.SourceIPInput`,
  `SourcePortInput`, `DestinationIPInput`, `DestinationPortInput` (the values Envoy's UDP
  matching data has: addresses as text, ports as decimal text);
- `matcher_tree` with `exact_match_map` or `prefix_match_map` (the longest matching prefix
  first; a nested matcher that does not match falls back to the next shorter prefix);
- `matcher_list`: the first field matcher whose predicate holds wins; predicates
  `single_predicate` with a `value_match` StringMatcher, `or_matcher`, `and_matcher`,
  `not_matcher`;
- `on_match` / `on_no_match`: an action of type `envoy.extensions.filters.udp.udp_proxy.v3.Route`
  or a nested matcher. A nested matcher that does not match means its parent did not match
  either (matcher.proto: "this matcher is considered not to have matched").

Refused by path: `custom_match`, `keep_matching`, other inputs and actions. No match at all:
the datagram has no route (`udp.<prefix>.downstream_sess_no_route`), as in Envoy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.extensions.filters.udp.udp_proxy.v3 import route_pb2

from protos.errors import ConfigError, unsupported
from protos.loader import unpack_any
from protos.registry import type_name
from proxy.model.fields import reject_unsupported
from proxy.model.matchers import StringMatcher, translate_string_matcher, within

ROUTE_TYPE = "envoy.extensions.filters.udp.udp_proxy.v3.Route"
_NETWORK_INPUTS = "envoy.extensions.matching.common_inputs.network.v3."
INPUTS = {
    _NETWORK_INPUTS + "SourceIPInput": "source_ip",
    _NETWORK_INPUTS + "SourcePortInput": "source_port",
    _NETWORK_INPUTS + "DestinationIPInput": "destination_ip",
    _NETWORK_INPUTS + "DestinationPortInput": "destination_port",
}

Address = tuple[str, int]


def input_value(kind: str, source: Address, destination: Address) -> str:
    """What an input reads from a datagram's addresses."""
    if kind == "source_ip":
        return source[0]
    if kind == "source_port":
        return str(source[1])
    if kind == "destination_ip":
        return destination[0]
    return str(destination[1])


@dataclass(frozen=True)
class OnMatch:
    cluster: str = ""
    matcher: UdpMatcher | None = None

    def route(self, source: Address, destination: Address) -> str | None:
        if self.matcher is not None:
            return self.matcher.route(source, destination)
        return self.cluster


@dataclass(frozen=True)
class Predicate:
    kind: str  # "single", "or", "and", "not"
    input: str = ""
    value: StringMatcher | None = None
    children: tuple[Predicate, ...] = ()

    def holds(self, source: Address, destination: Address) -> bool:
        if self.kind == "single":
            assert self.value is not None
            return self.value.matches(input_value(self.input, source, destination))
        if self.kind == "or":
            return any(child.holds(source, destination) for child in self.children)
        if self.kind == "and":
            return all(child.holds(source, destination) for child in self.children)
        return not self.children[0].holds(source, destination)


@dataclass(frozen=True)
class UdpMatcher:
    """A matcher_list (`rules`) or a matcher_tree (`tree_input` with `exact` or `prefixes`),
    and `on_no_match`."""

    rules: tuple[tuple[Predicate, OnMatch], ...] = ()
    tree_input: str = ""
    exact: Mapping[str, OnMatch] = field(default_factory=dict)
    prefixes: tuple[tuple[str, OnMatch], ...] = ()  # longest first
    on_no_match: OnMatch | None = None

    def route(self, source: Address, destination: Address) -> str | None:
        """The cluster for a datagram from `source` to `destination`; None: no match."""
        for found in self._candidates(source, destination):
            cluster = found.route(source, destination)
            if cluster is not None:
                return cluster
        if self.on_no_match is not None:
            return self.on_no_match.route(source, destination)
        return None

    def _candidates(self, source: Address, destination: Address) -> list[OnMatch]:
        if self.rules:
            return [on_match for predicate, on_match in self.rules
                    if predicate.holds(source, destination)]
        if not self.tree_input:
            return []
        value = input_value(self.tree_input, source, destination)
        if self.prefixes:
            return [on_match for prefix, on_match in self.prefixes if value.startswith(prefix)]
        exact = self.exact.get(value)
        return [exact] if exact is not None else []


def translate_matcher(matcher: Any, where: str = "matcher") -> UdpMatcher:
    """xds.type.matcher.v3.Matcher -> UdpMatcher; ConfigError names the field path."""
    reject_unsupported(matcher, {"matcher_list", "matcher_tree", "on_no_match"},
                       prefix=f"{where}.")
    on_no_match = (_on_match(matcher.on_no_match, f"{where}.on_no_match")
                   if matcher.HasField("on_no_match") else None)
    if matcher.HasField("matcher_list"):
        rules = tuple(
            (_predicate(item.predicate, f"{where}.matcher_list.matchers[{index}].predicate"),
             _on_match(item.on_match, f"{where}.matcher_list.matchers[{index}].on_match"))
            for index, item in enumerate(matcher.matcher_list.matchers))
        if not rules:
            raise ConfigError("needs at least one matcher", field=f"{where}.matcher_list")
        return UdpMatcher(rules=rules, on_no_match=on_no_match)
    if matcher.HasField("matcher_tree"):
        return _tree(matcher.matcher_tree, f"{where}.matcher_tree", on_no_match)
    return UdpMatcher(on_no_match=on_no_match)


def _tree(tree: Any, where: str, on_no_match: OnMatch | None) -> UdpMatcher:
    reject_unsupported(tree, {"input", "exact_match_map", "prefix_match_map"},
                       prefix=f"{where}.")
    kind = _input(tree.input, f"{where}.input")
    if tree.HasField("exact_match_map"):
        exact = {key: _on_match(value, f"{where}.exact_match_map.map[{key}]")
                 for key, value in tree.exact_match_map.map.items()}
        return UdpMatcher(tree_input=kind, exact=exact, on_no_match=on_no_match)
    if tree.HasField("prefix_match_map"):
        prefixes = sorted(
            ((key, _on_match(value, f"{where}.prefix_match_map.map[{key}]"))
             for key, value in tree.prefix_match_map.map.items()),
            key=lambda item: len(item[0]), reverse=True)
        return UdpMatcher(tree_input=kind, prefixes=tuple(prefixes), on_no_match=on_no_match)
    raise ConfigError("a matcher tree needs exact_match_map or prefix_match_map",
                      field=f"{where}.exact_match_map")


def _on_match(on_match: Any, where: str) -> OnMatch:
    reject_unsupported(on_match, {"matcher", "action"}, prefix=f"{where}.")
    if on_match.HasField("matcher"):
        return OnMatch(matcher=translate_matcher(on_match.matcher, f"{where}.matcher"))
    if not on_match.HasField("action"):
        raise ConfigError("needs an action or a matcher", field=f"{where}.action")
    typed = f"{where}.action.typed_config"
    action = on_match.action
    if not action.HasField("typed_config") or type_name(action.typed_config.type_url) \
            != ROUTE_TYPE:
        raise ConfigError(f"the action must be a {ROUTE_TYPE}", field=typed)
    route = unpack_any(action.typed_config, field=typed)
    assert isinstance(route, route_pb2.Route)
    if not route.cluster:
        raise ConfigError("a cluster name is required", field=f"{typed}.cluster")
    return OnMatch(cluster=route.cluster)


def _predicate(predicate: Any, where: str) -> Predicate:
    kind = predicate.WhichOneof("match_type")
    if kind == "single_predicate":
        single = predicate.single_predicate
        here = f"{where}.single_predicate"
        reject_unsupported(single, {"input", "value_match"}, prefix=f"{here}.")
        if not single.HasField("value_match"):
            raise ConfigError("needs a value_match", field=f"{here}.value_match")
        value = within(f"{here}.value_match", translate_string_matcher, single.value_match)
        return Predicate("single", _input(single.input, f"{here}.input"), value)
    if kind in ("or_matcher", "and_matcher"):
        children = tuple(_predicate(child, f"{where}.{kind}.predicate[{index}]")
                         for index, child in enumerate(getattr(predicate, kind).predicate))
        if len(children) < 2:  # matcher.proto: min_items 2
            raise ConfigError("needs at least two predicates", field=f"{where}.{kind}")
        return Predicate(kind.removesuffix("_matcher"), children=children)
    if kind == "not_matcher":
        return Predicate("not", children=(_predicate(predicate.not_matcher,
                                                     f"{where}.not_matcher"),))
    raise ConfigError("a predicate needs a match type", field=f"{where}.single_predicate")


def _input(config: Any, where: str) -> str:
    name = type_name(config.typed_config.type_url) if config.HasField("typed_config") else ""
    kind = INPUTS.get(name)
    if kind is None:
        raise unsupported(f"{where}.typed_config",
                          f"{name or config.name!r}: UDP inputs are source/destination IP/port")
    return kind
