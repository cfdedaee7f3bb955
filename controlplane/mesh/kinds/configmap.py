"""`v1 ConfigMap`: `data` (text) and `binaryData` (base64), as Kubernetes stores them. Stored
whatever it holds; the mesh reads CA bundles from it (BackendTLSPolicy
`validation.caCertificateRefs`: the PEM certificates under the key `ca.crt`,
backendtlspolicy_types.go), and reports one that does not hold them on the object that
refers to it. Refused only what the API server refuses (pkg/apis/core/validation
ValidateConfigMap): binaryData that is not base64, a key in both maps.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509

from controlplane.mesh.fields import Fields

CA_KEY = "ca.crt"


@dataclass(frozen=True)
class ConfigMapSpec:
    data: Mapping[str, str]
    binary: Mapping[str, bytes]

    def ca_bundle(self) -> tuple[bytes, str]:
        """The PEM CA certificates under `ca.crt` and "", or b"" and why there are none."""
        value = self.data.get(CA_KEY)
        found = value.encode() if value is not None else self.binary.get(CA_KEY)
        if found is None:
            return b"", f"has no {CA_KEY!r} key"
        try:
            if x509.load_pem_x509_certificates(found):
                return found, ""
        except ValueError:
            pass
        return b"", f"{CA_KEY} is not PEM X.509 certificates"


def parse_configmap(fields: Fields) -> ConfigMapSpec:
    data = fields.text_map("data")
    binary: dict[str, bytes] = {}
    for key, value in fields.text_map("binaryData").items():
        if key in data:
            raise fields.context.error((*fields.path, "binaryData", key),
                                       "a key must not be in both data and binaryData")
        try:
            binary[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as error:
            raise fields.context.error((*fields.path, "binaryData", key),
                                       "is not valid base64") from error
    fields.flag("immutable")
    return ConfigMapSpec(MappingProxyType(data), MappingProxyType(binary))
