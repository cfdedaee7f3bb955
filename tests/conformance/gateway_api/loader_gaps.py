"""What our loader (controlplane.mesh.load.read_objects) refuses today in the vendored gateway
manifests, object by object, and why: the gap analysis for the session that builds the gateway
runner (GAPS.md says the same in prose). test_gateway_translation.py recomputes it, so this list
changes exactly when the loader or the vendored manifests do.
"""

from __future__ import annotations

from dataclasses import dataclass

# Why an object is refused (the test's `why`).
WORKLOAD = ("a workload (Deployment): the runner starts these as `pointsman sidecar`/echo "
            "processes instead of applying them")
UNKNOWN_KIND = "a kind our model does not know"
UDP_SERVICE = "a Service port with protocol UDP (the suite's coredns)"
PLACEHOLDER = ("the suite's {GATEWAY_CONTROLLER_NAME} placeholder: the runner must substitute "
               "our controllerName before applying, as the Go suite does")
ADDRESS_PLACEHOLDER = ("the suite's PLACEHOLDER_UNUSABLE_ADDRS / PLACEHOLDER_USABLE_ADDRS: the "
                       "runner substitutes addresses before applying, as the Go suite does "
                       "(--usable-network-addresses, --unusable-network-addresses)")
OTHER_FIELD = "a field our model does not take"
LISTENER_SET = ("kind ListenerSet (gateway.networking.k8s.io) is not in our model: listeners "
                "added to a Gateway from another object, routes attached to it")
ALLOWED_LISTENERS = ("Gateway spec.allowedListeners (which namespaces may attach ListenerSets) "
                     "is not a field our Gateway takes")
OTHER = "other"


@dataclass(frozen=True)
class Gap:
    manifest: str  # under upstream/conformance/
    obj: str  # "Kind namespace/name" as the loader names it
    field: str  # the field path refused ("kind" for an unknown kind)
    why: str


LOADER_GAPS: tuple[Gap, ...] = (
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
        'Deployment gateway-conformance-app-backend/tls-backend',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-app-backend/app-backend-v1',
        'kind', WORKLOAD),
    Gap('base/manifests.yaml',
        'Deployment gateway-conformance-app-backend/app-backend-v2',
        'kind', WORKLOAD),
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
        'Deployment gateway-conformance-infra/tcp-backend',
        'kind', WORKLOAD),
    Gap('tests/gateway-static-addresses.yaml',
        'Gateway gateway-conformance-infra/gateway-static-addresses',
        'spec.addresses[1].value', ADDRESS_PLACEHOLDER),
    Gap('tests/gateway-tls-backend-client-certificate.yaml',
        'Deployment gateway-conformance-infra/tls-backend-with-client-cert-validation',
        'kind', WORKLOAD),
    Gap('tests/gatewayclass-observed-generation-bump.yaml',
        'GatewayClass default/gatewayclass-observed-generation-bump',
        'spec.controllerName', PLACEHOLDER),
    Gap('tests/listenerset-allowed-namespace-none.yaml',
        'Gateway gateway-conformance-infra/gateway-does-not-allow-listenerset',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-allowed-namespace-none.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-not-allowed',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-namespace-same.yaml',
        'Gateway gateway-conformance-infra/gateway-allows-listenerset-in-same-namespace',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-allowed-namespace-same.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-in-same-namespace',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-namespace-same.yaml',
        'ListenerSet gateway-api-listenerset-not-allowed-ns/listenerset-in-different-namespace',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-namespace-selector.yaml',
        'Gateway gateway-conformance-infra/gateway-allows-listenerset-in-selected-namespace',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-allowed-namespace-selector.yaml',
        'ListenerSet gateway-api-listenerset-selector-allowed-ns/listenerset-in-selected-namespace',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-namespace-selector.yaml',
        'ListenerSet gateway-api-listenerset-selector-not-allowed-ns/listenerset-not-in-selected-namespace',  # noqa: E501
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-routes-namespaces.yaml',
        'Gateway gateway-conformance-infra/gateway-with-listener-sets-test-allowed-routes',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-allowed-routes-namespaces.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-test-allowed-routes-namespaces',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-routes-namespaces.yaml',
        'ListenerSet gateway-api-ls-cross-ns/listenerset-test-allowed-routes-cross-ns',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-allowed-routes-supported-kinds.yaml',
        'Gateway gateway-conformance-infra/gateway-with-listener-sets-test-supported-route-kinds',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-allowed-routes-supported-kinds.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-test-allowed-routes-supported-kinds',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-default-not-allowed.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-default-not-allowed',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-dual-parentref-independence.yaml',
        'Gateway gateway-conformance-infra/gateway-dual-parentref',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-dual-parentref-independence.yaml',
        'ListenerSet gateway-conformance-infra/ls-dual-parentref',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-gateway-parent-section-name-not-found.yaml',
        'Gateway gateway-conformance-infra/gateway-section-name',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-gateway-parent-section-name-not-found.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-section-name',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-hostname-conflict.yaml',
        'Gateway gateway-conformance-infra/gateway-with-listenerset-hostname-conflict',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-hostname-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-hostname-conflict-with-gateway-1',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-hostname-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-hostname-conflict-with-gateway-2',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-hostname-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-hostname-conflict-with-listener-set-1',  # noqa: E501
        'kind', LISTENER_SET),
    Gap('tests/listenerset-hostname-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-hostname-conflict-with-listener-set-2',  # noqa: E501
        'kind', LISTENER_SET),
    Gap('tests/listenerset-http-routing.yaml',
        'Gateway gateway-conformance-infra/gateway-with-listener-sets-http-routing',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-http-routing.yaml',
        'ListenerSet gateway-conformance-infra/listener-set-http-routing-1',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-http-routing.yaml',
        'ListenerSet gateway-conformance-infra/listener-set-http-routing-2',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-protocol-conflict.yaml',
        'Gateway gateway-conformance-infra/gateway-with-listenerset-protocol-conflict',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-protocol-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-protocol-conflict-with-gateway-1',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-protocol-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-protocol-conflict-with-gateway-2',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-protocol-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-protocol-conflict-with-listener-set-1',  # noqa: E501
        'kind', LISTENER_SET),
    Gap('tests/listenerset-protocol-conflict.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-protocol-conflict-with-listener-set-2',  # noqa: E501
        'kind', LISTENER_SET),
    Gap('tests/listenerset-reference-grant.yaml',
        'Gateway gateway-conformance-infra/gateway-with-listener-sets-test-reference-grant',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-reference-grant.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-with-reference-grant',
        'kind', LISTENER_SET),
    Gap('tests/listenerset-reference-grant.yaml',
        'ListenerSet gateway-api-listener-sets-test-reference-grant-ns/listenerset-without-reference-grant',  # noqa: E501
        'kind', LISTENER_SET),
    Gap('tests/listenerset-route-status-scoped-to-parentref.yaml',
        'Gateway gateway-conformance-infra/gateway-parentref',
        'spec.allowedListeners', ALLOWED_LISTENERS),
    Gap('tests/listenerset-route-status-scoped-to-parentref.yaml',
        'ListenerSet gateway-conformance-infra/listenerset-parentref',
        'kind', LISTENER_SET),
)
