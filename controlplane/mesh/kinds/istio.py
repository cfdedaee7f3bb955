"""What Istio's security kinds share (istio/api type/v1beta1/selector.proto and
security/v1beta1/authorization.proto): the workload `selector` and the string patterns of
AuthorizationPolicy fields ("exact match, prefix match (`abc*`), suffix match (`*abc`) and
presence match (`*`)")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.mesh.fields import Fields, Item

SECURITY_V1 = ("security.istio.io/v1", "security.istio.io/v1beta1")
# matchLabels as sorted pairs (hashable); None: no selector.
Selector = tuple[tuple[str, str], ...] | None


@dataclass(frozen=True)
class Pattern:
    kind: str  # exact | prefix | suffix | presence
    value: str = ""

    def matches(self, text: str) -> bool:
        if self.kind == "presence":
            return text != ""
        if self.kind == "prefix":
            return text.startswith(self.value)
        if self.kind == "suffix":
            return text.endswith(self.value)
        return text == self.value

    def __str__(self) -> str:
        return {"presence": "*", "prefix": f"{self.value}*",
                "suffix": f"*{self.value}"}.get(self.kind, self.value)


def pattern_of(text: str) -> Pattern | None:
    """None when a '*' sits anywhere but at one end (Istio's validation refuses it)."""
    if text == "*":
        return Pattern("presence")
    if text.endswith("*") and "*" not in text[:-1]:
        return Pattern("prefix", text[:-1])
    if text.startswith("*") and "*" not in text[1:]:
        return Pattern("suffix", text[1:])
    return Pattern("exact", text) if "*" not in text else None


def patterns(fields: Fields, key: str) -> tuple[Pattern, ...]:
    def parse(item: Item) -> Pattern:
        text = item.text(min_len=1)
        found = pattern_of(text)
        if found is None:
            raise item.error(f"invalid value {text!r}: '*' may only be the whole value, its "
                             "first or its last character")
        return found
    return fields.items(key, parse)


def parse_selector(fields: Fields) -> Selector:
    """`selector.matchLabels` (WorkloadSelector); None when there is no selector."""
    def parse(inner: Fields) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(inner.text_map("matchLabels").items()))
    return fields.obj("selector", parse)


def selects(selector: Selector, labels: Mapping[str, str]) -> bool:
    """A workload matches when it has every label of the selector (an empty one: all)."""
    return selector is None or all(labels.get(key) == value for key, value in selector)
