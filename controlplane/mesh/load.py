"""YAML streams -> validated `MeshObject`s (the seam with the API and the stores).

`load_objects(text, source)` reads every document of a stream and returns its objects, or
raises the first `MeshError` (file, line, object, field path). `read_objects` returns the
objects it could read and every error (for `pointsman analyze`, which reports them all).
`load_path(path)` reads a file, or every .yaml/.yml/.json file under a folder (hidden files
and folders skipped, sorted, so the order is stable). `kind: List` (kubectl's output) is
taken apart into its items.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from controlplane.mesh.errors import Location, MeshError
from controlplane.mesh.fields import Fields
from controlplane.mesh.kinds.authorizationpolicy import parse_authorizationpolicy_spec
from controlplane.mesh.kinds.backendtlspolicy import parse_backendtlspolicy_spec
from controlplane.mesh.kinds.backendtrafficpolicy import parse_backendtrafficpolicy_spec
from controlplane.mesh.kinds.clienttrafficpolicy import parse_clienttrafficpolicy_spec
from controlplane.mesh.kinds.configmap import parse_configmap
from controlplane.mesh.kinds.endpointslice import parse_endpointslice
from controlplane.mesh.kinds.gateway import parse_gateway_spec
from controlplane.mesh.kinds.gatewayclass import parse_gatewayclass_spec
from controlplane.mesh.kinds.grpcroute import parse_grpcroute_spec
from controlplane.mesh.kinds.httproute import parse_httproute_spec
from controlplane.mesh.kinds.istio import SECURITY_V1
from controlplane.mesh.kinds.listenerset import parse_listenerset_spec
from controlplane.mesh.kinds.namespace import parse_namespace_spec
from controlplane.mesh.kinds.peerauthentication import parse_peerauthentication_spec
from controlplane.mesh.kinds.referencegrant import parse_referencegrant_spec
from controlplane.mesh.kinds.secret import parse_secret
from controlplane.mesh.kinds.securitypolicy import parse_securitypolicy_spec
from controlplane.mesh.kinds.service import parse_service_spec
from controlplane.mesh.kinds.tcproute import parse_tcproute_spec
from controlplane.mesh.kinds.tlsroute import parse_tlsroute_spec, parse_tlsroute_v1_spec
from controlplane.mesh.objects import (
    KindSpec,
    MeshObject,
    context_for,
    read_metadata,
    revision_of,
)
from controlplane.mesh.yamldoc import Document, parse_stream

GW = "gateway.networking.k8s.io/"
EG = "gateway.envoyproxy.io/v1alpha1"
KINDS: dict[str, KindSpec] = {spec.kind: spec for spec in (
    KindSpec("Service", ("v1",), parse_service_spec),
    KindSpec("Namespace", ("v1",), parse_namespace_spec, spec_required=False),
    KindSpec("Secret", ("v1",), parse_top=parse_secret, spec_required=False),
    KindSpec("ConfigMap", ("v1",), parse_top=parse_configmap, spec_required=False),
    KindSpec("EndpointSlice", ("discovery.k8s.io/v1",), parse_top=parse_endpointslice,
             spec_required=False),
    KindSpec("Gateway", (GW + "v1", GW + "v1beta1"), parse_gateway_spec),
    KindSpec("GatewayClass", (GW + "v1", GW + "v1beta1"), parse_gatewayclass_spec),
    KindSpec("HTTPRoute", (GW + "v1", GW + "v1beta1"), parse_httproute_spec),
    KindSpec("GRPCRoute", (GW + "v1",), parse_grpcroute_spec),
    KindSpec("TCPRoute", (GW + "v1alpha2",), parse_tcproute_spec),
    KindSpec("TLSRoute", (GW + "v1", GW + "v1alpha2"), parse_tlsroute_spec,
             version_parsers=((GW + "v1", parse_tlsroute_v1_spec),)),
    KindSpec("ReferenceGrant", (GW + "v1beta1", GW + "v1"), parse_referencegrant_spec),
    KindSpec("BackendTLSPolicy", (GW + "v1", GW + "v1alpha3"), parse_backendtlspolicy_spec),
    KindSpec("ListenerSet", (GW + "v1",), parse_listenerset_spec),
    KindSpec("BackendTrafficPolicy", (EG,), parse_backendtrafficpolicy_spec),
    KindSpec("SecurityPolicy", (EG,), parse_securitypolicy_spec),
    KindSpec("ClientTrafficPolicy", (EG,), parse_clienttrafficpolicy_spec),
    KindSpec("PeerAuthentication", SECURITY_V1, parse_peerauthentication_spec),
    KindSpec("AuthorizationPolicy", SECURITY_V1, parse_authorizationpolicy_spec),
)}
SUFFIXES = (".yaml", ".yml", ".json")
MAX_OBJECTS = 20_000


def load_objects(text: str, source: str = "<input>") -> list[MeshObject]:
    """Every object of a YAML stream; the first error is raised."""
    objects, errors = read_objects(text, source)
    if errors:
        raise errors[0]
    return objects


def read_objects(text: str, source: str = "<input>") -> tuple[list[MeshObject], list[MeshError]]:
    """The objects that could be read, and an error for each one that could not."""
    try:
        documents = parse_stream(text, source)
    except MeshError as error:
        return [], [error]
    objects: list[MeshObject] = []
    errors: list[MeshError] = []
    for document in _expand_lists(documents, errors):
        try:
            objects.append(parse_object(document))
        except MeshError as error:
            errors.append(error)
        except RecursionError as error:  # defensive: parse_stream bounds the depth already
            errors.append(MeshError("nested too deeply", Location(source, document.line)))
            del error
    if len(objects) > MAX_OBJECTS:
        errors.insert(0, MeshError(f"more than {MAX_OBJECTS} objects", Location(source)))
    return objects, errors


def load_path(path: Path) -> list[MeshObject]:
    objects, errors = read_path(path)
    if errors:
        raise errors[0]
    return objects


def read_path(path: Path) -> tuple[list[MeshObject], list[MeshError]]:
    objects: list[MeshObject] = []
    errors: list[MeshError] = []
    for file in mesh_files(path):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            errors.append(MeshError(f"cannot read: {error}", Location(str(file))))
            continue
        found, failed = read_objects(text, str(file))
        objects += found
        errors += failed
    return objects, errors


def mesh_files(path: Path) -> list[Path]:
    if not path.exists():
        raise MeshError("no such file or folder", Location(str(path)))
    if path.is_file():
        return [path]
    return sorted(item for item in path.rglob("*")
                  if item.is_file() and item.suffix in SUFFIXES
                  and not any(part.startswith(".") for part in item.relative_to(path).parts))


def _expand_lists(documents: Iterable[Document], errors: list[MeshError]) -> list[Document]:
    """kubectl's `kind: List` holds objects under `items`: each becomes a document of its own
    (sharing the line table, with paths re-rooted)."""
    out: list[Document] = []
    for document in documents:
        data = document.data
        if isinstance(data, dict) and data.get("kind") == "List" and isinstance(
                data.get("items"), list):
            for index, item in enumerate(data["items"]):
                lines = {path[2:]: line for path, line in document.lines.items()
                         if path[:2] == ("items", index)}
                out.append(Document(item, document.source, document.index, lines))
            continue
        out.append(document)
    return out


def parse_object(document: Document) -> MeshObject:
    context = context_for(document)
    fields = Fields(context, (), document.data)
    kind_name = fields.req_str("kind", min_len=1)
    kind = KINDS.get(kind_name)
    if kind is None:
        raise fields.error("kind", f"unknown kind {kind_name!r} (supported: "
                                   f"{', '.join(sorted(KINDS))})")
    api_version = fields.req_str("apiVersion", min_len=1)
    if api_version not in kind.api_versions:
        raise fields.error("apiVersion", f"{kind_name} is not served as {api_version!r} "
                                         f"(supported: {', '.join(kind.api_versions)})")
    meta = read_metadata(fields)
    context.obj = f"{kind_name} {meta.namespace}/{meta.name}"
    fields.raw("status")  # written by the control plane; what the input says is not kept
    spec = _spec(fields, kind, api_version)
    raw_spec = {key: value for key, value in document.data.items()
                if key not in ("status", "metadata")}
    return MeshObject(api_version, kind_name, meta, spec, document,
                      revision_of(api_version, kind_name, meta, raw_spec), document.data)


def _spec(fields: Fields, kind: KindSpec, api_version: str) -> Any:
    parse_spec = kind.spec_parser(api_version)
    if parse_spec is not None:
        spec = fields.obj("spec", parse_spec, required=kind.spec_required)
        fields.done()
        return spec
    assert kind.parse_top is not None
    spec = kind.parse_top(fields)
    fields.done()
    return spec
