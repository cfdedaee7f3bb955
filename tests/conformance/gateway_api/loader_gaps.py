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
)
