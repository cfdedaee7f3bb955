"""`explain`'s answer to "would the receiving sidecar let this caller in, and by which rule?",
computed by the code the sidecar runs: the destination's inbound listener is compiled as the
control plane would send it, the filter chain its listener would pick for the caller's
connection (mTLS or plaintext: automatic mTLS and the port's PeerAuthentication mode) is
taken, and its RBAC filters (DENY, then ALLOW) are run by the sidecar's own RBAC filter
(proxy.http.filters.rbac) on the request, with the caller's SPIFFE ID as the peer's URI SAN.
On a TCP port the filters are network RBAC (proxy.network.rbac), run on the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from controlplane.mesh.compile.compiler import MeshCompiler, mtls_to
from controlplane.mesh.compile.memo import Endpoints, Memo, View
from controlplane.mesh.compile.node import MeshNode
from controlplane.mesh.identity import MeshIdentity
from controlplane.mesh.objects import MeshObject
from controlplane.mesh.resolve import Mesh
from controlplane.mesh.security import port_mode
from controlplane.resources import LISTENER
from proxy.codec.headers import RequestHead
from proxy.http.filter import HttpStream
from proxy.http.filters import rbac
from proxy.http.peer import PEER_KEY, PeerTls
from proxy.model.rbac import Rules
from proxy.network import rbac as network_rbac
from proxy.network.base import DownstreamConnection

DESTINATION_IP = "192.0.2.20"  # TEST-NET-1 (RFC 5737)
DESTINATION_OUTBOUND_IP = "192.0.2.21"


@dataclass(frozen=True)
class Admission:
    transport: str  # "mTLS" | "plaintext"
    mode: str  # the port's PeerAuthentication mode, "DISABLE" without a mesh identity
    allowed: bool
    reason: str

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else "denied"
        return f"{verdict} over {self.transport} ({self.mode}): {self.reason}"


def admission(mesh: Mesh, identity: MeshIdentity | None, service: MeshObject, port: int,
              request: RequestHead | None, peer: str | None, source_ip: str) -> Admission:
    """`request` None: a TCP connection (the port's network RBAC decides)."""
    view = View(mesh, Endpoints(), Memo(identity=identity))
    tls = mtls_to(view, service, port)
    spec_port = service.spec.port(port)
    target = spec_port.target_port if spec_port is not None else port
    mode = "DISABLE" if identity is None else port_mode(
        mesh.of_kind("PeerAuthentication"), service, target, identity.root_namespace).mode
    transport = "mTLS" if tls else "plaintext"
    chain = _chain(_inbound(mesh, identity, service, port), tls)
    if chain is None:
        return Admission(transport, mode, False, "the port takes mTLS only (STRICT): the "
                                                 "connection is closed")
    peer_tls = PeerTls((peer,)) if tls and peer else None
    if request is None:  # a TCP port: the connection
        connection = cast(DownstreamConnection, SimpleNamespace(
            remote_address=(source_ip, 40000), local_address=(DESTINATION_IP, port),
            direct_remote_address=None, peer=peer_tls, server_name=""))
        return _decide(transport, mode, [(rules, connection) for rules in _network(chain)],
                       "the connection is closed")
    stream = HttpStream(request, (source_ip, 40000), (DESTINATION_IP, port), 1)
    if peer_tls is not None:
        stream.connection_state[PEER_KEY] = peer_tls
    checks = [(config.rules, stream) for config in _rbac_configs(chain)
              if config.rules is not None]
    return _decide(transport, mode, checks, "403")


def _decide(transport: str, mode: str, checks: list[tuple[Rules[Any], Any]],
            refused: str) -> Admission:
    """The RBAC filters in order (DENY, then ALLOW), as the sidecar runs them."""
    for rules, subject in checks:
        allowed, matched = rules.evaluate(subject)
        if not allowed:
            return Admission(transport, mode, False,
                             f"DENY policy rule {matched}" if matched
                             else f"no ALLOW policy rule matches ({refused})")
        if rules.action == "ALLOW":
            return Admission(transport, mode, True, f"ALLOW policy rule {matched}")
    return Admission(transport, mode, True, "no AuthorizationPolicy denies it and none "
                                            "requires an ALLOW")


def _network(chain: Any) -> list[Rules[DownstreamConnection]]:
    out = []
    for item in chain.filters:
        if item.name == "envoy.filters.network.rbac":
            message = network_rbac_pb2.RBAC()
            item.typed_config.Unpack(message)
            rules = network_rbac.translate(message).rules
            if rules is not None:
                out.append(rules)
    return out


def _inbound(mesh: Mesh, identity: MeshIdentity | None, service: MeshObject, port: int
             ) -> listener_pb2.Listener | None:
    node = MeshNode("explain-destination", "Service", service.name, service.namespace,
                    DESTINATION_IP, "127.0.0.1", DESTINATION_OUTBOUND_IP)
    resources = MeshCompiler(mesh, Endpoints(), identity).compile_node(node).resources
    found = resources[LISTENER.type_url].get(f"inbound|{port}")
    if found is None:
        return None
    listener = listener_pb2.Listener()
    found.packed.Unpack(listener)
    return listener


def _chain(listener: listener_pb2.Listener | None, tls: bool) -> Any:
    """The chain Envoy's matching picks for a TLS or a plaintext connection."""
    if listener is None:
        return None
    wanted = "tls" if tls else "raw_buffer"
    for chain in listener.filter_chains:
        if chain.filter_chain_match.transport_protocol in (wanted, ""):
            return chain
    return None


def _rbac_configs(chain: Any) -> list[rbac.RbacConfig]:
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    if not chain.filters or not chain.filters[0].typed_config.Unpack(hcm):
        return []  # a TCP port: network RBAC (_network)
    out = []
    for item in hcm.http_filters:
        if item.name == "envoy.filters.http.rbac":
            message = rbac_pb2.RBAC()
            item.typed_config.Unpack(message)
            out.append(rbac.translate(message))
    return out
