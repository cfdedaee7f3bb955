"""kubectl's ways of naming a kind, for every kind the mesh loads."""

from __future__ import annotations

from controlplane.api.kinds import GROUPS, canonical_kind, resource_name
from controlplane.mesh.load import KINDS


def test_every_loaded_kind_is_named_with_its_group() -> None:
    assert set(GROUPS) == set(KINDS)
    for kind, spec in KINDS.items():
        group = spec.api_versions[0].rpartition("/")[0]
        assert GROUPS[kind] == group


def test_kubectl_forms() -> None:
    for name, kind in (("svc", "Service"), ("services", "Service"), ("HTTPRoute", "HTTPRoute"),
                       ("httproutes.gateway.networking.k8s.io", "HTTPRoute"),
                       ("backendtrafficpolicies", "BackendTrafficPolicy"), ("btp",
                                                                            "BackendTrafficPolicy"),
                       ("gatewayclasses", "GatewayClass"), ("EndpointSlices", "EndpointSlice"),
                       ("secret", "Secret"), ("nope", None)):
        assert canonical_kind(name) == kind, name
    assert resource_name("HTTPRoute") == "httproute.gateway.networking.k8s.io"
    assert resource_name("Service") == "service"
