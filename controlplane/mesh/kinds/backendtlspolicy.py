"""`gateway.networking.k8s.io/v1 BackendTLSPolicy` (apis/v1 backendtlspolicy_types.go): how
a proxy connects to a Service over TLS. `targetRefs` name Services (with `sectionName`, one
port by name); `validation` says how the backend's certificate is checked: CA certificates
from ConfigMaps (`caCertificateRefs`, key `ca.crt`) or the system's
(`wellKnownCACertificates: System`), the SNI and the name to verify (`hostname`), or other
names to verify instead (`subjectAltNames`, Hostname or URI).

Refused here, by field path, what the CRD refuses (its OpenAPI and CEL rules); references
are resolved, and reported in status, by controlplane.mesh.backendtls. `options` is
implementation-specific and Pointsman defines none: a non-empty one is refused, not ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.mesh.fields import DNS_SUBDOMAIN, HOSTNAME, Fields
from controlplane.mesh.kinds.refs import GROUP, KIND, TargetRef, normal_group, parse_target_ref

# PreciseHostname (shared_types.go): a hostname without a wildcard.
PRECISE_HOSTNAME = re.compile(DNS_SUBDOMAIN.pattern)
# WellKnownCACertificatesType.
WELL_KNOWN = re.compile(r"^(System|([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
                        r"/([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]))$")
# AbsoluteURI (shared_types.go).
ABSOLUTE_URI = re.compile(r"^(([^:/?#]+):)(//([^/?#]*))([^?#]*)(\?([^#]*))?(#(.*))?")


@dataclass(frozen=True)
class LocalRef:
    """LocalObjectReference: an object in the policy's namespace."""

    group: str
    kind: str
    name: str


@dataclass(frozen=True)
class SubjectAltName:
    type: str  # "Hostname" | "URI"
    value: str


@dataclass(frozen=True)
class BackendTLSPolicySpec:
    targets: tuple[TargetRef, ...]
    ca_refs: tuple[LocalRef, ...]
    well_known: str | None
    hostname: str
    subject_alt_names: tuple[SubjectAltName, ...]


def parse_backendtlspolicy_spec(fields: Fields) -> BackendTLSPolicySpec:
    targets = fields.obj_list("targetRefs", parse_target_ref, min_items=1, max_items=16)
    _check_distinct(fields, targets)
    validation = fields.obj("validation", _validation, required=True)
    assert validation is not None
    if fields.text_map("options"):
        raise fields.error("options", "Pointsman defines no BackendTLSPolicy options")
    return BackendTLSPolicySpec(targets, *validation)


def _check_distinct(fields: Fields, targets: tuple[TargetRef, ...]) -> None:
    """The CEL rules of targetRefs: the same target twice needs distinct sectionNames."""
    seen: dict[tuple[str, str, str], set[str | None]] = {}
    for index, target in enumerate(targets):
        sections = seen.setdefault((target.group, target.kind, target.name), set())
        if sections and (target.section_name is None or None in sections):
            raise fields.context.error((*fields.path, "targetRefs", index, "sectionName"),
                                       "sectionName must be specified when targetRefs includes "
                                       "2 or more references to the same target")
        if target.section_name in sections:
            raise fields.context.error((*fields.path, "targetRefs", index, "sectionName"),
                                       "sectionName must be unique when targetRefs includes 2 "
                                       "or more references to the same target")
        sections.add(target.section_name)


def _validation(fields: Fields) -> tuple[tuple[LocalRef, ...], str | None, str,
                                         tuple[SubjectAltName, ...]]:
    refs = fields.obj_list("caCertificateRefs", _local_ref, max_items=8)
    well_known = fields.text("wellKnownCACertificates", min_len=1, max_len=253,
                             pattern=WELL_KNOWN)
    if refs and well_known:
        raise fields.error("wellKnownCACertificates", "must not contain both CACertificateRefs "
                                                      "and WellKnownCACertificates")
    if not refs and not well_known:
        raise fields.error("caCertificateRefs", "must specify either CACertificateRefs or "
                                                "WellKnownCACertificates")
    hostname = fields.req_str("hostname", min_len=1, max_len=253, pattern=PRECISE_HOSTNAME)
    names = fields.obj_list("subjectAltNames", _subject_alt_name, max_items=5)
    return refs, well_known, hostname, names


def _local_ref(fields: Fields) -> LocalRef:
    return LocalRef(
        group=normal_group(fields.req_str("group", max_len=253, pattern=GROUP)),
        kind=fields.req_str("kind", min_len=1, max_len=63, pattern=KIND),
        name=fields.req_str("name", min_len=1, max_len=253))


def _subject_alt_name(fields: Fields) -> SubjectAltName:
    kind = fields.req_str("type", enum=("Hostname", "URI"))
    hostname = fields.text("hostname", max_len=253, pattern=HOSTNAME) or None
    uri = fields.text("uri", max_len=253, pattern=ABSOLUTE_URI) or None
    if kind == "Hostname" and hostname is None:
        raise fields.error("hostname", "SubjectAltName element must contain Hostname, if Type "
                                       "is set to Hostname")
    if kind != "Hostname" and hostname is not None:
        raise fields.error("hostname", "SubjectAltName element must not contain Hostname, if "
                                       "Type is not set to Hostname")
    if kind == "URI" and uri is None:
        raise fields.error("uri", "SubjectAltName element must contain URI, if Type is set to "
                                  "URI")
    if kind != "URI" and uri is not None:
        raise fields.error("uri", "SubjectAltName element must not contain URI, if Type is not "
                                  "set to URI")
    return SubjectAltName(kind, (hostname if kind == "Hostname" else uri) or "")
