"""The mesh's identity settings, read from this one place by the compiler (auto mTLS, Istio
security policies) and by `describe`/`explain`.

Contract with the control plane's CA (controlplane/ca/, issue 14 part A): every sidecar gets
two SDS secrets over ADS, `default` (its SVID and key) and `ROOTCA` (the trust bundle); a
Service's sidecars have the SPIFFE ID `spiffe://<trust-domain>/ns/<namespace>/sa/<service>`
(the Service name stands for the service account). `ROOT_NAMESPACE` is Istio's default
`meshConfig.rootNamespace`: a PeerAuthentication or AuthorizationPolicy there without a
selector applies to the whole mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

TRUST_DOMAIN = "cluster.local"
ROOT_NAMESPACE = "istio-system"
CERTIFICATE_SECRET = "default"
TRUST_BUNDLE_SECRET = "ROOTCA"
ADS_SOURCE = {"ads": {}, "resource_api_version": "V3"}


@dataclass(frozen=True)
class MeshIdentity:
    """Given to the compiler when the control plane issues workload certificates: sidecars
    then talk mTLS to each other (docs/mesh-security.md). Without it nothing is encrypted and
    the policies that need a peer identity are reported as not enforced."""

    trust_domain: str = TRUST_DOMAIN
    root_namespace: str = ROOT_NAMESPACE

    def spiffe_id(self, namespace: str, service: str) -> str:
        return spiffe_id(self.trust_domain, namespace, service)


def spiffe_id(trust_domain: str, namespace: str, service: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service}"
