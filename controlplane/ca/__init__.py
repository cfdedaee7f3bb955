"""The mesh's certificate authority (docs/security.md).

- `authority.py`: sans-I/O issuance: a root made once, or the operator's CA/intermediate; X.509
  SVIDs for `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`, the trust bundle, and when
  each SVID is due for rotation (everything takes `now`).
- `secrets.py`: SVIDs as SDS Secrets under Istio's names (`default`, `ROOTCA`), one per
  identity, re-issued at half life.
- `keeper.py`: where the root lives (the store, key mode 0600) and the flags that bring one.
- `csr.py` (sans I/O) and `certificates.py`: sidecars' own certificates from CSRs
  (`CreateCertificate`), for xDS over mTLS; `admission.py`: an xDS stream bound to its client
  certificate's identity, else to its join token (`tokens.py`); `serving.py`: `--tls`.
"""

from controlplane.ca.authority import (
    DEFAULT_LIFETIME,
    DEFAULT_TRUST_DOMAIN,
    CaError,
    CertificateAuthority,
    Svid,
    spiffe_id,
)
from controlplane.ca.secrets import ROOT_SECRET, SVID_SECRET, IdentitySecrets

__all__ = ["DEFAULT_LIFETIME", "DEFAULT_TRUST_DOMAIN", "ROOT_SECRET", "SVID_SECRET", "CaError",
           "CertificateAuthority", "IdentitySecrets", "Svid", "spiffe_id"]
