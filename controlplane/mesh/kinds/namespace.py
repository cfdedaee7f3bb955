"""`v1 Namespace`: a name and labels, which Gateway listeners select routes' namespaces by
(`allowedRoutes.namespaces.from: Selector`) and which the Gateway API conformance manifests
declare. Namespaces are not required: an object's namespace exists by being named. The
Namespace's own `metadata.namespace` is meaningless (cluster-scoped) and ignored by lookups.

`spec.finalizers` is taken and has no effect (nothing here deletes a namespace's objects with
it); `status` is written by a cluster, not read.
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.mesh.fields import Fields


@dataclass(frozen=True)
class NamespaceSpec:
    finalizers: tuple[str, ...] = ()


def parse_namespace_spec(fields: Fields) -> NamespaceSpec:
    names = fields.text_list("finalizers", min_len=1, max_len=253)
    fields.done()
    return NamespaceSpec(names)
