"""`metav1.LabelSelector` (k8s.io/apimachinery meta/v1 types.go): `matchLabels` and
`matchExpressions` ANDed; an expression's operator is In, NotIn, Exists or DoesNotExist, In and
NotIn with at least one value, Exists and DoesNotExist with none (LabelSelectorRequirement's
validation). An empty selector matches everything; a nil one (absent) nothing
(metav1.LabelSelectorAsSelector).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controlplane.mesh.fields import Fields

OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """labels.Requirement.Matches: NotIn and DoesNotExist hold for an absent key."""
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return self.key not in labels or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(key) == value for key, value in self.match_labels) and all(
            requirement.matches(labels) for requirement in self.expressions)


def parse_label_selector(fields: Fields) -> LabelSelector:
    labels = tuple(sorted(fields.text_map("matchLabels").items()))
    expressions = fields.obj_list("matchExpressions", _requirement)
    return LabelSelector(labels, expressions)


def _requirement(fields: Fields) -> Requirement:
    key = fields.req_str("key", min_len=1, max_len=317)
    operator = fields.req_str("operator", enum=OPERATORS)
    values = fields.text_list("values", max_len=63)
    if operator in ("In", "NotIn") and not values:
        raise fields.error("values", f"must be non-empty for operator {operator}")
    if operator in ("Exists", "DoesNotExist") and values:
        raise fields.error("values", f"must be empty for operator {operator}")
    return Requirement(key, operator, values)
