"""Who an xDS stream may be (the DiscoveryServer's admission hook), over mTLS or a join token.

A stream whose connection presented a client certificate from the mesh CA (xDS over mTLS,
`controlplane --tls` off loopback; gRPC verified the chain and its validity at the handshake)
is bound to that certificate's SPIFFE ID: its node must be that identity, `node.cluster` the
service account and `metadata.namespace` (default `default`) the namespace, else the stream
ends with PERMISSION_DENIED before any response (logged as `node_refused`, counted in
`pointsman_xds_refused_total{reason="identity"}`). Istio binds a proxy to its certificate the
same way (istiod's authenticated identity must match the proxy's service account). Such a
stream needs no join token: the certificate is the proof.

Without a client certificate (loopback, or `--tls-cert` without `--client-ca`) the join-token
check (ca/tokens.py) applies when `--require-join-token` is given, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from controlplane.ca.csr import CsrError, peer_identity
from controlplane.ca.tokens import JoinTokens, Refused
from controlplane.mesh.compile.node import metadata_of
from controlplane.mesh.objects import DEFAULT_NAMESPACE


def node_claim(node: Any) -> tuple[str, str]:
    """(namespace, name) as the node states it, member of the mesh or not."""
    namespace = metadata_of(node).get("namespace")
    return (namespace if isinstance(namespace, str) and namespace else DEFAULT_NAMESPACE,
            node.cluster)


class XdsAdmission:
    """`tokens`: the join-token check for streams without a client certificate (None: such
    streams are believed, as without `--require-join-token`). `bind`: client certificates are
    the mesh CA's SVIDs (`--tls` off loopback), so they name the stream's identity; False
    for the operator's own PKI (`--client-ca`), whose certificates prove nothing here.
    `refused(reason)` counts."""

    def __init__(self, trust_domain: str, tokens: JoinTokens | None = None,
                 refused: Callable[[str], None] = lambda reason: None, *,
                 bind: bool = True) -> None:
        self.trust_domain = trust_domain
        self.tokens = tokens
        self.refused = refused
        self.bind = bind

    def __repr__(self) -> str:
        return (f"XdsAdmission({self.trust_domain!r}, tokens={self.tokens is not None}, "
                f"bind={self.bind})")

    async def admit(self, node: Any, metadata: Iterable[tuple[str, Any]],
                    auth_context: Mapping[str, Sequence[bytes]] | None = None) -> str | None:
        """The admitting token's id (None: no token involved); Refused says why not."""
        try:
            peer = peer_identity(auth_context or {}, self.trust_domain) if self.bind else None
        except CsrError as error:
            self.refused("certificate")
            raise Refused(f"node {node.id!r}: {error}") from error
        if peer is not None:
            claimed = node_claim(node)
            if claimed != peer:
                self.refused("identity")
                raise Refused(f"node {node.id!r} claims {'/'.join(claimed)} but its client "
                              f"certificate is {'/'.join(peer)}'s")
            return None
        if self.tokens is None:
            return None
        try:
            return await self.tokens.admit(node, metadata)
        except Refused:
            self.refused("token")
            raise

    def track(self, token_id: str, close: Callable[[], None]) -> Callable[[], None]:
        assert self.tokens is not None  # only a token's id is tracked
        return self.tokens.track(token_id, close)
