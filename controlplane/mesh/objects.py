"""The object envelope every mesh kind shares: apiVersion, kind, metadata, spec, status.

A `MeshObject` is immutable: its `spec` is the kind's frozen dataclass, built once from the
YAML by the kind's module (`controlplane/mesh/kinds/`), and its `revision` is a hash of what it
says (apiVersion, kind, name, namespace, labels, annotations and spec), which the incremental
compiler compares. `status` in the input is ignored: the control plane writes status.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from controlplane.mesh.errors import Location
from controlplane.mesh.fields import DNS_LABEL, DNS_SUBDOMAIN, Context, Fields
from controlplane.mesh.yamldoc import Document, Path, format_path

DEFAULT_NAMESPACE = "default"

# Metadata a cluster adds to objects (`kubectl get -o yaml`): taken, and changes nothing here.
_BOOKKEEPING = ("uid", "resourceVersion", "managedFields", "ownerReferences", "finalizers",
                "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds")


class ObjectKey(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class ObjectMeta:
    name: str
    namespace: str = DEFAULT_NAMESPACE
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    generation: int = 1
    creation_timestamp: str = ""  # RFC 3339 as given; "" sorts after any timestamp


@dataclass(frozen=True, eq=False)
class MeshObject:
    """One validated object. `document` keeps the line of every field for later reports."""

    api_version: str
    kind: str
    meta: ObjectMeta
    spec: Any
    document: Document
    revision: str
    raw: Mapping[str, Any]

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, self.meta.namespace, self.meta.name)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def namespace(self) -> str:
        return self.meta.namespace

    @property
    def label(self) -> str:
        return f"{self.kind} {self.meta.namespace}/{self.meta.name}"

    @property
    def source(self) -> str:
        return self.document.source

    def location(self, path: Path = ()) -> Location:
        return Location(self.document.source, self.document.line_of(path), self.label,
                        format_path(path))

    def __repr__(self) -> str:
        return f"MeshObject({self.label}, {self.revision})"


SpecParser = Callable[[Fields], Any]


@dataclass(frozen=True)
class KindSpec:
    """How to read one kind: the apiVersions taken and the spec parser (None: no spec, the
    kind's fields sit at the top level, read by `parse_top`)."""

    kind: str
    api_versions: tuple[str, ...]
    parse_spec: SpecParser | None = None
    parse_top: Callable[[Fields], Any] | None = None
    spec_required: bool = True
    # Where an apiVersion validates differently (TLSRoute v1 requires hostnames, v1alpha2
    # does not): its own spec parser, else `parse_spec`.
    version_parsers: tuple[tuple[str, SpecParser], ...] = ()

    def spec_parser(self, api_version: str) -> SpecParser | None:
        return dict(self.version_parsers).get(api_version, self.parse_spec)


def read_metadata(fields: Fields) -> ObjectMeta:
    return fields.obj("metadata", _metadata, required=True) or ObjectMeta("")


def _metadata(fields: Fields) -> ObjectMeta:
    name = fields.req_str("name", max_len=253, pattern=DNS_SUBDOMAIN)
    namespace = fields.text("namespace", default=DEFAULT_NAMESPACE, max_len=63,
                           pattern=DNS_LABEL) or DEFAULT_NAMESPACE
    labels = fields.text_map("labels")
    annotations = fields.text_map("annotations")
    generation = fields.integer("generation", default=1, minimum=0) or 1
    created = fields.raw("creationTimestamp")
    for key in _BOOKKEEPING:
        fields.raw(key)
    fields.done(unsupported=("generateName",))
    return ObjectMeta(name, namespace, MappingProxyType(labels), MappingProxyType(annotations),
                      generation, "" if created is None else _timestamp(created))


def _timestamp(value: Any) -> str:
    if hasattr(value, "isoformat"):
        text = value.isoformat()
        return text.replace("+00:00", "Z")
    return str(value)


def revision_of(api_version: str, kind: str, meta: ObjectMeta, spec: Any) -> str:
    content = json.dumps([api_version, kind, meta.namespace, meta.name, dict(meta.labels),
                          dict(meta.annotations), meta.creation_timestamp, spec],
                         sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(content.encode(), digest_size=8).hexdigest()


def label_for(data: Any) -> str:
    """The object's label for errors, from raw data (best effort, before it is validated)."""
    if not isinstance(data, dict):
        return ""
    kind = data.get("kind") if isinstance(data.get("kind"), str) else "object"
    found = data.get("metadata")
    metadata: dict[str, Any] = found if isinstance(found, dict) else {}
    name = metadata.get("name") if isinstance(metadata.get("name"), str) else "?"
    namespace = metadata.get("namespace") if isinstance(metadata.get("namespace"), str) \
        else DEFAULT_NAMESPACE
    return f"{kind} {namespace}/{name}"


def context_for(document: Document) -> Context:
    return Context(document, label_for(document.data))
