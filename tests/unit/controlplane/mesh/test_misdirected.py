"""421 Misdirected Request on HTTPS listeners sharing a port (gateway_types.go
Listener.Hostname, RFC 9110 section 15.5.20, RFC 7540 section 9.1.2): over a connection whose
SNI chose one listener's filter chain, a Host that another listener of the port serves more
specifically answers 421; a Host no other listener takes gets the 404 of an unrouted name.
Played on the conformance suite's own manifests and cases
(httproute-https-listener-detect-misdirected-requests.go)."""

from __future__ import annotations

import pytest

from controlplane.mesh.explain import explain
from controlplane.resources import ROUTE
from tests.unit.controlplane.mesh.helpers import as_dict, compiled, gateway, mesh_of
from tests.unit.controlplane.mesh.test_backend_tls import CA_CONFIG_MAP, FRONTEND, NS, suite_mesh
from tests.unit.controlplane.mesh.test_gateway import edge, to

GATEWAY = "same-namespace-with-https-listener"
PATH = "/detect-misdirected-requests"

# (SNI, Host, status, backend): the upstream test's cases
CASES = [
    ("example.org", "example.org", 200, "infra-backend-v1"),
    ("example.org", "second-example.org", 421, ""),
    ("example.org", "unknown-example.org", 404, ""),
    ("second-example.org", "second-example.org", 200, "infra-backend-v2"),
    ("second-example.org", "example.org", 421, ""),
    ("second-example.org", "unknown-example.org", 421, ""),
    ("third-example.wildcard.org", "third-example.wildcard.org", 200, "infra-backend-v3"),
    ("third-example.wildcard.org", "fith-example.wildcard.org", 200, "infra-backend-v3"),
    ("third-example.wildcard.org", "fourth-example.wildcard.org", 421, ""),
    ("third-example.wildcard.org", "second-example.org", 421, ""),
    ("third-example.wildcard.org", "unknown-example.org", 421, ""),
    ("fourth-example.wildcard.org", "fourth-example.wildcard.org", 200, "infra-backend-v1"),
    ("fourth-example.wildcard.org", "fith-example.wildcard.org", 421, ""),
    ("unknown-example.org", "example.org", 200, "infra-backend-v1"),
    ("unknown-example.org", "unknown-example.org", 404, ""),
]


@pytest.fixture(scope="module")
def mesh():  # type: ignore[no-untyped-def]
    return suite_mesh("httproute-https-listener-detect-misdirected-requests.yaml",
                      extra=CA_CONFIG_MAP + FRONTEND)


@pytest.mark.parametrize(("sni", "host", "status", "backend"), CASES,
                         ids=[f"{sni}-{host}" for sni, host, _, _ in CASES])
def test_the_suite_cases(mesh, sni: str, host: str, status: int,  # type: ignore[no-untyped-def]
                         backend: str) -> None:
    answer = explain(mesh, f"gateway/{GATEWAY}", "GET", f"https://{sni}{PATH}",
                     [("host", host)], namespace=NS)
    if status == 200:
        assert answer.action == "forward", answer
        assert [item.service for item in answer.backends] == [f"{NS}/{backend}"]
    elif status == 421:
        assert (answer.action, answer.status) == ("direct_response", 421), answer
    else:  # no virtual host takes the name: Envoy's 404
        assert answer.action in ("none", "direct_response") and answer.status in (None, 404), \
            answer


def test_a_tls_listener_on_the_port_misdirects_nothing() -> None:
    """Only HTTPS listeners of the port count ("on the same port and protocol"): beside a
    TLS passthrough listener an HTTPS one keeps its route table, with no 421."""
    resources = compiled(mesh_of(edge(to("api", parent="{name: edge, sectionName: https}"))),
                         gateway("edge"))
    table = as_dict(resources, ROUTE.type_url, "gateway|443|https")
    assert [(vhost["domains"], [route.get("direct_response", {}).get("status")
                                for route in vhost["routes"]])
            for vhost in table["virtual_hosts"]] == [(["secure.example.com"], [None])]
