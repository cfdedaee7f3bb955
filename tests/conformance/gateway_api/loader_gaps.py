"""What our loader (controlplane.mesh.load.read_objects) refuses today in the vendored gateway
manifests, object by object, and why: the gap analysis for the session that builds the gateway
runner (GAPS.md says the same in prose). test_gateway_translation.py recomputes it, so this list
changes exactly when the loader or the vendored manifests do.
"""

from __future__ import annotations

from dataclasses import dataclass

# Why an object is refused (the test's `why`).
NO_NAMESPACE = ("kind Namespace is not in our model: the suite's namespaces, and their labels "
                "for allowedRoutes.namespaces.from: Selector")
WORKLOAD = ("a workload kind (Deployment, ConfigMap): the runner starts these as `pointsman "
            "sidecar`/echo processes instead of applying them")
UNKNOWN_KIND = "a kind our model does not know"
SELECTOR = ("allowedRoutes.namespaces.from: Selector is refused (needs Namespace objects with "
            "labels)")
UDP_SERVICE = "a Service port with protocol UDP (the suite's coredns)"
LISTENER_PROTOCOL = ("a listener protocol we do not serve is an apply error, where the suite "
                     "expects the Gateway stored with the listener Accepted=False "
                     "(UnsupportedProtocol)")
PLACEHOLDER = ("the suite's {GATEWAY_CONTROLLER_NAME} placeholder: the runner must substitute "
               "our controllerName before applying, as the Go suite does")
BAD_CERT = ("a malformed certificate Secret is an apply error, where the suite expects it "
            "stored and the listener ResolvedRefs=False (InvalidCertificateRef)")
UNSUPPORTED_FIELD = ("a field our Gateway does not take (spec.infrastructure: parametersRef), "
                     "where the suite expects the Gateway Accepted=False (InvalidParameters)")
API_VERSION = ("TLSRoute as gateway.networking.k8s.io/v1 (the suite's TLSRoute manifests are "
               "v1 at this commit; our loader serves TLSRoute as v1alpha2 only)")
BACKEND_FILTER = ("a backendRef-level filter other than the header modifiers (URLRewrite, "
                  "RequestRedirect on a backendRef: HTTPRouteBackendURLRewrite, "
                  "HTTPRouteBackendRequestRedirect)")
GATEWAY_TLS = ("Gateway spec.tls (frontend client certificate validation, default and per port) "
               "is not a field our Gateway takes")
OTHER_FIELD = "a field our model does not take"
OTHER = "other"


@dataclass(frozen=True)
class Gap:
    manifest: str  # under upstream/conformance/
    obj: str  # "Kind namespace/name" as the loader names it
    field: str  # the field path refused ("kind" for an unknown kind)
    why: str


LOADER_GAPS: tuple[Gap, ...] = (
    Gap('base/manifests.yaml',
        'Namespace default/gateway-conformance-infra',
        'kind', NO_NAMESPACE),
    Gap('base/manifests.yaml',
        'Gateway gateway-conformance-infra/backend-namespaces',
        'spec.listeners[0].allowedRoutes.namespaces.from', SELECTOR),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/infra-backend-v1',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/infra-backend-v2',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/infra-backend-v3',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/tls-backend',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/tls-backend-2',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Namespace default/gateway-conformance-app-backend',
        'kind', NO_NAMESPACE),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-app-backend/tls-backend',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-app-backend/app-backend-v1',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-app-backend/app-backend-v2',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Namespace default/gateway-conformance-web-backend',
        'kind', NO_NAMESPACE),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-web-backend/web-backend',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/grpc-infra-backend-v1',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/grpc-infra-backend-v2',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/grpc-infra-backend-v3',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Service gateway-conformance-infra/coredns',
        'spec.ports[0].protocol', UDP_SERVICE),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/coredns',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'ConfigMap gateway-conformance-infra/coredns',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-infra/tcp-backend',
        'kind', WORKLOAD),
    Gap('tests/gateway-invalid-default-frontend-client-certificate-validation.yaml',
        'Gateway gateway-conformance-infra/invalid-default-client-validation-config',
        'spec.tls', BAD_CERT),
    Gap('tests/gateway-invalid-listeners-unsupported-protocol.yaml',
        'Gateway gateway-conformance-infra/gateway-only-unsupported-protocols',
        'spec.listeners[0].protocol', LISTENER_PROTOCOL),
    Gap('tests/gateway-invalid-listeners-unsupported-protocol.yaml',
        'Gateway gateway-conformance-infra/gateway-supported-and-unsupported-protocols',
        'spec.listeners[1].protocol', LISTENER_PROTOCOL),
    Gap('tests/gateway-invalid-parameters-ref.yaml',
        'Gateway gateway-conformance-infra/gateway-invalid-parameters-ref',
        'spec.infrastructure', UNSUPPORTED_FIELD),
    Gap('tests/gateway-invalid-tls-configuration.yaml',
        'Secret gateway-conformance-infra/malformed-certificate',
        'data.tls.crt', BAD_CERT),
    Gap('tests/gateway-with-attached-routes.yaml',
        'Gateway gateway-conformance-infra/gateway-with-one-attached-route',
        'spec.listeners[0].allowedRoutes.namespaces.from', SELECTOR),
    Gap('tests/gateway-with-attached-routes.yaml',
        'Gateway gateway-conformance-infra/gateway-with-two-attached-routes',
        'spec.listeners[0].allowedRoutes.namespaces.from', SELECTOR),
    Gap('tests/gateway-with-attached-routes.yaml',
        'Gateway gateway-conformance-infra/unresolved-gateway-with-one-attached-unresolved-route',
        'spec.listeners[0].allowedRoutes.namespaces.from', SELECTOR),
    Gap('tests/gateway-with-clientcertificate-validation-insecure-fallback.yaml',
        'Gateway gateway-conformance-infra/client-validation-insecure-fallback',
        'spec.tls', BAD_CERT),
    Gap('tests/gateway-with-clientcertificate-validation.yaml',
        'Gateway gateway-conformance-infra/client-validation-default',
        'spec.tls', BAD_CERT),
    Gap('tests/gateway-with-invalid-clientcertificate-validation.yaml',
        'Gateway gateway-conformance-infra/gateway-with-invalid-client-cert-validation',
        'spec.tls', BAD_CERT),
    Gap('tests/gatewayclass-observed-generation-bump.yaml',
        'GatewayClass default/gatewayclass-observed-generation-bump',
        'spec.controllerName', PLACEHOLDER),
    Gap('tests/httproute-backend-request-redirect.yaml',
        'HTTPRoute gateway-conformance-infra/backend-request-redirect',
        'spec.rules[0].backendRefs[0].filters[0].type', BACKEND_FILTER),
    Gap('tests/httproute-backend-url-rewrite.yaml',
        'HTTPRoute gateway-conformance-infra/backend-url-rewrite',
        'spec.rules[0].backendRefs[0].filters[0].type', BACKEND_FILTER),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-more-specific-wc-hostname-x-1',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-exact-hostname-x-2',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-less-specific-wc-hostname-x-2',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-exact-hostname-x-3',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-more-specific-wc-hostname-x-3',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-exact-hostname-x-4',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-hostname-intersection.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-less-specific-wc-hostname-x-4',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-backendref-nonexistent.yaml',
        'TLSRoute gateway-conformance-infra/invalid-backend-ref-nonexistent',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-backendref-unknown-kind.yaml',
        'TLSRoute gateway-conformance-infra/invalid-backend-ref-unknown-kind',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-no-matching-listener-hostname.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-hostname-mismatch-1',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-no-matching-listener-hostname.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-hostname-mismatch-2',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-no-matching-listener.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-not-allowed-protocol-http',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-no-matching-listener.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-not-allowed-protocol-https',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-no-matching-listener.yaml',
        'TLSRoute gateway-conformance-infra/tlsroute-no-matching-section-name',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-invalid-reference-grant.yaml',
        'TLSRoute gateway-conformance-infra/gateway-conformance-infra-test',
        'apiVersion', API_VERSION),
    Gap('tests/tlsroute-simple-same-namespace.yaml',
        'TLSRoute gateway-conformance-infra/gateway-conformance-infra-test',
        'apiVersion', API_VERSION),
)
