"""The certificate service (`pointsman.identity.v1.CertificateService.CreateCertificate`,
Istio's `IstioCertificateService`): a sidecar sends a CSR for its own key and gets its SVID
chain. A thin gRPC adapter; the decisions are ca/csr.py's.

Who the caller is, in this order:
1. a client certificate from the mesh CA (the xDS port over mTLS verified it): renewal, as
   Istio's agent renews with its current certificate;
2. a join token (gRPC metadata `x-pointsman-join-token`, ca/tokens.py) naming a Service.
Neither: UNAUTHENTICATED; an unknown or revoked token: UNAUTHENTICATED; a CSR for another
identity than the caller's: PERMISSION_DENIED; a malformed CSR: INVALID_ARGUMENT. Every
answer is logged (`certificate_issued`, `certificate_refused`) and counted
(`pointsman_certificates_total{result=...}`).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from controlplane import logs
from controlplane.ca.authority import CaError, CertificateAuthority
from controlplane.ca.csr import CsrError, peer_identity, requested_validity, sign_request
from controlplane.ca.serving import utc_now
from controlplane.ca.tokens import METADATA_KEY, TokenBook
from controlplane.transport.h2_server import Method, grpcio_handlers
from protos.gen.pointsman.identity.v1 import identity_pb2 as pb

SERVICE = "pointsman.identity.v1.CertificateService"


class CertificateService:
    """`book`: the join tokens (None: only client certificates prove an identity).
    `trust_peers`: client certificates are the mesh CA's (xDS over mTLS), so they prove an
    identity; False where they are the operator's own PKI (`--client-ca`) or never asked for.
    `counted(result)`: issued, denied, unauthenticated, invalid."""

    def __init__(self, authority: CertificateAuthority, book: TokenBook | None, *,
                 trust_peers: bool = True,
                 clock: Callable[[], datetime.datetime] = utc_now,
                 counted: Callable[[str], None] = lambda result: None) -> None:
        self.authority = authority
        self.book = book
        self.trust_peers = trust_peers
        self.clock = clock
        self.counted = counted

    def __repr__(self) -> str:
        return f"CertificateService({self.authority!r}, tokens={self.book is not None})"

    def methods(self) -> dict[str, Method]:
        """The method by path, for either transport (controlplane/transport/)."""
        return {f"/{SERVICE}/CreateCertificate": Method(
            self.create_certificate, pb.CertificateRequest.FromString, False,
            lambda message: bytes(message.SerializeToString()))}

    def handler(self) -> grpc.GenericRpcHandler:
        [handler] = grpcio_handlers(self.methods())
        return handler

    async def create_certificate(self, request: pb.CertificateRequest,
                                 context: grpc.aio.ServicerContext) -> pb.CertificateResponse:
        try:
            identity = await self._caller(context)
            issued = sign_request(self.authority, request.csr, identity, self.clock(),
                                  requested_validity(request.validity_duration))
        except CsrError as error:
            code = (grpc.StatusCode.PERMISSION_DENIED if error.denied
                    else grpc.StatusCode.INVALID_ARGUMENT)
            await self._refuse(context, code, str(error))
        except _Unauthenticated as error:
            await self._refuse(context, grpc.StatusCode.UNAUTHENTICATED, str(error))
        except CaError as error:
            await self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))
        self.counted("issued")
        logs.event("certificate_issued", spiffe_id=issued.spiffe_id, serial=f"{issued.serial:x}",
                   not_after=issued.not_after.isoformat(), peer=context.peer())
        return pb.CertificateResponse(cert_chain=list(issued.chain))

    async def _caller(self, context: grpc.aio.ServicerContext) -> tuple[str, str]:
        peer = (peer_identity(context.auth_context() or {}, self.authority.trust_domain)
                if self.trust_peers else None)
        if peer is not None:
            return peer
        token = _token(context.invocation_metadata() or ())
        if not token or self.book is None:
            raise _Unauthenticated(f"a join token (gRPC metadata {METADATA_KEY}) or a client "
                                   "certificate from the mesh CA is required")
        info = await self.book.lookup(token)
        if info is None:
            raise _Unauthenticated("unknown or revoked join token")
        return info.namespace, info.service

    async def _refuse(self, context: grpc.aio.ServicerContext, code: grpc.StatusCode,
                      message: str) -> NoReturn:
        self.counted({grpc.StatusCode.PERMISSION_DENIED: "denied",
                      grpc.StatusCode.UNAUTHENTICATED: "unauthenticated"}.get(code, "invalid"))
        logs.event("certificate_refused", logging.WARNING, code=code.name, error=message,
                   peer=context.peer())
        await context.abort(code, message)
        raise AssertionError("abort returned")  # grpc's abort raises


class _Unauthenticated(Exception):
    pass


def _token(metadata: Any) -> str:
    return next((str(value) for key, value in metadata if key == METADATA_KEY), "")
