"""`v1 Secret`: `data` (base64, as Kubernetes stores it) and `stringData` (plain).

A Secret is stored whatever its `type` and content, as the API server stores it: what a
reference to it may use is decided where it is referenced (controlplane.mesh.resolve), so a
Secret that cannot serve is reported on the object that names it, not refused at apply (the
conformance suite's GatewayInvalidTLSConfiguration and GatewayInvalidTLSBackendConfiguration
apply such Secrets and expect them stored). Refused here is only what the API server refuses
(kubernetes pkg/apis/core/validation ValidateSecret): `data` that is not base64, and a
`kubernetes.io/tls` Secret without the `tls.crt` and `tls.key` keys.

A `kubernetes.io/tls` Secret is usable as a certificate (Gateway listener certificateRefs, the
Gateway's backend client certificate) when `tls.crt` holds PEM X.509 certificates and
`tls.key` a PEM private key: `problem` says why not, otherwise. It is checked here, once,
so that a malformed certificate never reaches a proxy (Envoy would refuse the listener, and
with it every good listener of the same update).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from controlplane.mesh.fields import Fields

TLS_TYPE = "kubernetes.io/tls"
OPAQUE = "Opaque"


@dataclass(frozen=True, repr=False)
class SecretSpec:
    type: str
    data: Mapping[str, bytes]
    problem: str = ""  # why it is not a usable TLS certificate and key ("" when it is)

    @property
    def certificate_chain(self) -> bytes:
        return self.data.get("tls.crt", b"")

    @property
    def private_key(self) -> bytes:
        return self.data.get("tls.key", b"")

    @property
    def usable_tls(self) -> bool:
        return not self.problem

    def __repr__(self) -> str:  # never print a private key
        return f"SecretSpec({self.type}, keys {sorted(self.data)}, values hidden)"


def parse_secret(fields: Fields) -> SecretSpec:
    kind = fields.text("type", default=OPAQUE, min_len=1, max_len=253) or OPAQUE
    data = fields.text_map("data")
    plain = fields.text_map("stringData")
    fields.flag("immutable")
    values: dict[str, bytes] = {}
    for key, value in data.items():
        try:
            values[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise fields.context.error((*fields.path, "data", key),
                                       "is not valid base64") from error
    values.update({key: value.encode() for key, value in plain.items()})
    if kind == TLS_TYPE:
        for key in ("tls.crt", "tls.key"):
            if key not in values:  # the API server's rule (ValidateSecret, SecretTypeTLS)
                raise fields.error("data", f"a {TLS_TYPE} Secret needs {key!r}")
    return SecretSpec(kind, MappingProxyType(values), tls_problem(kind, values))


def tls_problem(kind: str, values: Mapping[str, bytes]) -> str:
    """Why these values are not a certificate chain and private key a proxy can serve."""
    if kind != TLS_TYPE:
        return f"type {kind!r} is not {TLS_TYPE}"
    try:
        if not x509.load_pem_x509_certificates(values["tls.crt"]):
            return "tls.crt holds no certificate"
    except ValueError:
        return "tls.crt is not a PEM X.509 certificate"
    try:
        load_pem_private_key(values["tls.key"], None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return "tls.key is not an unencrypted PEM private key"
    return ""
