"""What Envoy Gateway's policies share: targetRefs (gateway.envoyproxy.io/v1alpha1,
policy_helpers.go PolicyTargetReferences) and the kinds a policy may target here."""

from __future__ import annotations

from controlplane.mesh.fields import Fields
from controlplane.mesh.kinds.refs import TargetRef, parse_target_ref

EG_GROUP = "gateway.envoyproxy.io"


def parse_targets(fields: Fields) -> tuple[TargetRef, ...]:
    """`targetRefs`, or the deprecated single `targetRef`; targetSelectors are refused."""
    single = fields.obj("targetRef", parse_target_ref)
    many = fields.obj_list("targetRefs", parse_target_ref, max_items=16)
    if single is not None and many:
        raise fields.error("targetRef", "either targetRef or targetRefs must be used, not both")
    targets = (single,) if single is not None else many
    if not targets:
        raise fields.error("targetRefs", "is required (targetSelectors is not supported)")
    return targets


def check_target_kinds(fields: Fields, targets: tuple[TargetRef, ...], feature: str,
                       allowed: tuple[str, ...], why: str) -> None:
    """Refuse a feature on targets it cannot apply to (the targets' kinds are in the object
    itself, so this is checked when the object is read)."""
    for index, target in enumerate(targets):
        if target.kind not in allowed:
            raise fields.error(feature, f"cannot apply to a {target.kind} target "
                                        f"(targetRefs[{index}]): {why}")
