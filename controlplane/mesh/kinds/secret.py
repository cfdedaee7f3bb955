"""`v1 Secret` of type `kubernetes.io/tls`: a certificate chain and key for a Gateway
listener (certificateRefs). `data` is base64 as Kubernetes stores it; `stringData` plain."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from controlplane.mesh.fields import Fields

TLS_TYPE = "kubernetes.io/tls"


@dataclass(frozen=True, repr=False)
class SecretSpec:
    certificate_chain: bytes
    private_key: bytes

    def __repr__(self) -> str:  # never print a private key
        return f"SecretSpec(certificate {len(self.certificate_chain)} bytes, key hidden)"


def parse_secret(fields: Fields) -> SecretSpec:
    kind = fields.text("type", default="Opaque")
    if kind != TLS_TYPE:
        raise fields.error("type", f"type {kind!r} is not supported: mesh Secrets are "
                                   f"{TLS_TYPE} (certificates for Gateway listeners)")
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
    for key in ("tls.crt", "tls.key"):
        if not values.get(key):
            raise fields.error("data", f"a {TLS_TYPE} Secret needs {key!r}")
    if b"-----BEGIN" not in values["tls.crt"]:
        raise fields.context.error((*fields.path, "data", "tls.crt"), "is not a PEM certificate")
    if b"-----BEGIN" not in values["tls.key"]:
        raise fields.context.error((*fields.path, "data", "tls.key"), "is not a PEM private key")
    return SecretSpec(values["tls.crt"], values["tls.key"])
