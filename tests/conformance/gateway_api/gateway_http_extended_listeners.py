"""GATEWAY-HTTP extended tests about listeners: HTTP listener isolation, misdirected HTTPS
requests, and frontend client certificate validation (mTLS at the Gateway), translated by hand
from `conformance/tests/*.go` at the commit in upstream/UPSTREAM."""

from __future__ import annotations

from tests.conformance.gateway_api.expectations import ExpectedResponse, Request, Response
from tests.conformance.gateway_api.gateway_http_suite import code, to
from tests.conformance.gateway_api.gateway_steps import (
    INFRA,
    V1,
    V2,
    V3,
    GatewayAddress,
    GatewayConformanceTest,
    GatewayExchanges,
    Subtest,
    TLSExchange,
)
from tests.conformance.gateway_api.status import (
    NN,
    Condition,
    GatewayCondition,
    GatewayRef,
    ListenersConditions,
    NamespacesReady,
    RoutesAccepted,
    resolved,
)

SERVER_CERT = NN("tls-validity-checks-certificate")
CLIENT_CERT = NN("tls-validity-checks-client-certificate")
PER_PORT_CLIENT_CERT = NN("tls-validity-checks-per-port-client-certificate")
READY = (Condition("ResolvedRefs", "True"), Condition("Accepted", "True"),
         Condition("Programmed", "True"))

# GatewayHTTPListenerIsolation: each listener answers only its own route's path.
_ISOLATION_CASES = (
    to("/empty-hostname", V1, host="bar.com"),
    code("/wildcard-example-com", 404, host="bar.com"),
    code("/wildcard-foo-example-com", 404, host="bar.com"),
    code("/abc-foo-example-com", 404, host="bar.com"),
    code("/empty-hostname", 404, host="bar.example.com"),
    to("/wildcard-example-com", V1, host="bar.example.com"),
    code("/wildcard-foo-example-com", 404, host="bar.example.com"),
    code("/abc-foo-example-com", 404, host="bar.example.com"),
    code("/empty-hostname", 404, host="bar.foo.example.com"),
    code("/wildcard-example-com", 404, host="bar.foo.example.com"),
    to("/wildcard-foo-example-com", V1, host="bar.foo.example.com"),
    code("/abc-foo-example-com", 404, host="bar.foo.example.com"),
    code("/empty-hostname", 404, host="abc.foo.example.com"),
    code("/wildcard-example-com", 404, host="abc.foo.example.com"),
    code("/wildcard-foo-example-com", 404, host="abc.foo.example.com", namespace=INFRA),
    to("/abc-foo-example-com", V1, host="abc.foo.example.com"),
)


def _isolation(subtest: str, gateway: str, suffix: str) -> Subtest:
    routes = tuple(NN(f"attaches-to-{name}{suffix}") for name in (
        "empty-hostname", "wildcard-example-com", "wildcard-foo-example-com",
        "abc-foo-example-com"))
    return Subtest(subtest, (
        RoutesAccepted(GatewayRef(gateway), routes),
        *(resolved(route, NN(gateway)) for route in routes),
        GatewayExchanges(GatewayRef(gateway), _ISOLATION_CASES)))


# HTTPRouteHTTPSListenerDetectMisdirectedRequests: (SNI, Host, status, backend); a Host
# served by another listener than the SNI's answers 421.
_MISDIRECTED = (
    ("example.org", "example.org", 200, V1), ("example.org", "second-example.org", 421, ""),
    ("example.org", "unknown-example.org", 404, ""),
    ("second-example.org", "second-example.org", 200, V2),
    ("second-example.org", "example.org", 421, ""),
    ("second-example.org", "unknown-example.org", 421, ""),
    ("third-example.wildcard.org", "third-example.wildcard.org", 200, V3),
    ("third-example.wildcard.org", "fith-example.wildcard.org", 200, V3),
    ("third-example.wildcard.org", "fourth-example.wildcard.org", 421, ""),
    ("third-example.wildcard.org", "second-example.org", 421, ""),
    ("third-example.wildcard.org", "unknown-example.org", 421, ""),
    # infra-backend-v4 does not exist: the fourth route reuses infra-backend-v1
    ("fourth-example.wildcard.org", "fourth-example.wildcard.org", 200, V1),
    ("fourth-example.wildcard.org", "fith-example.wildcard.org", 421, ""),
    ("unknown-example.org", "example.org", 200, V1),
    ("unknown-example.org", "unknown-example.org", 404, ""),
)
_MISDIRECTED_ROUTES = tuple(NN(f"https-listener-detect-misdirected-requests-test-{n}")
                            for n in range(1, 5))
_HTTPS = GatewayRef("same-namespace-with-https-listener")


def _mtls(gateway: str, host: str, backend: str, port: str, *, client: NN | None,
          fails: bool = False) -> TLSExchange:
    """A request over TLS to the Gateway's portless address joined with `port`, presenting
    `client`'s certificate (or none); a failure expects no backend and no status."""
    expected = (ExpectedResponse(request=Request(host=host, path="/"), namespace=INFRA)
                if fails else
                ExpectedResponse(request=Request(host=host, path="/"),
                                 response=Response(status_code=200), backend=backend,
                                 namespace=INFRA))
    return TLSExchange(GatewayRef(gateway), host, SERVER_CERT, expected, client_cert=client,
                       port=port, expect_failure=fails)


def _invalid_ca(reason: str) -> tuple[Condition, ...]:
    return (Condition("ResolvedRefs", "False", reason),
            Condition("Accepted", "False", "NoValidCACertificate"),
            Condition("Programmed", "False"))


_VALIDATION = "client-validation-default"
_FALLBACK = "client-validation-insecure-fallback"
_INVALID_DEFAULT = "invalid-default-client-validation-config"
_INVALID = NN("gateway-with-invalid-client-cert-validation")

GATEWAY_HTTP_LISTENER_TESTS: tuple[GatewayConformanceTest, ...] = (
    GatewayConformanceTest(
        "GatewayHTTPListenerIsolation",
        "Listener isolation for HTTP listeners with multiple listeners and HTTPRoutes",
        ("Gateway", "GatewayHTTPListenerIsolation", "HTTPRoute"),
        ("tests/gateway-http-listener-isolation.yaml",
         "tests/gateway-http-listener-isolation-with-hostname-intersection.yaml"),
        (NamespacesReady(),
         _isolation("hostnames are configured only in listeners", "http-listener-isolation",
                    ""),
         _isolation("intersecting hostnames are configured in listeners and HTTPRoutes",
                    "http-listener-isolation-with-hostname-intersection",
                    "-with-hostname-intersection")),
        upstream_file="gateway-http-listener-isolation.go"),
    GatewayConformanceTest(
        "HTTPRouteHTTPSListenerDetectMisdirectedRequests",
        "HTTPS listeners on the same port detect misdirected requests and return HTTP "
        "421 when appropriate",
        ("Gateway", "GatewayHTTPSListenerDetectMisdirectedRequests", "HTTPRoute"),
        ("tests/httproute-https-listener-detect-misdirected-requests.yaml",),
        (RoutesAccepted(_HTTPS, _MISDIRECTED_ROUTES),
         *(resolved(route, _HTTPS.nn) for route in _MISDIRECTED_ROUTES),
         # over HTTP/2 (roundtripper.H2Protocol), SNI and Host set apart
         *(TLSExchange(_HTTPS, sni, SERVER_CERT, ExpectedResponse(
             request=Request(host=host, path="/detect-misdirected-requests", protocol="H2"),
             response=Response(status_codes=(status,)), backend=backend, namespace=INFRA))
           for sni, host, status, backend in _MISDIRECTED)),
        upstream_file="httproute-https-listener-detect-misdirected-requests.go"),
    GatewayConformanceTest(
        "GatewayFrontendClientCertificateValidation",
        "Gateway's client certificate validation config should be used for HTTPS "
        "traffic",
        ("Gateway", "HTTPRoute", "GatewayFrontendClientCertificateValidation"),
        ("tests/gateway-with-clientcertificate-validation.yaml",),
        # two HTTPS listeners on different ports: the address is taken without its port
        (RoutesAccepted(GatewayRef(_VALIDATION), (
            NN("client-certificate-validation-https-test"),
            NN("client-certificate-validation-https-test-no-hostname")), use_port=False),
         resolved(NN("client-certificate-validation-https-test"), NN(_VALIDATION)),
         resolved(NN("client-certificate-validation-https-test-no-hostname"), NN(_VALIDATION)),
         Subtest("Validate default configuration", (
             _mtls(_VALIDATION, "example.org", V1, "443", client=CLIENT_CERT),
             _mtls(_VALIDATION, "example.org", "", "443", client=PER_PORT_CLIENT_CERT,
                   fails=True))),
         Subtest("Validate per port configuration", (
             _mtls(_VALIDATION, "second-example.org", V2, "8443", client=PER_PORT_CLIENT_CERT),
             _mtls(_VALIDATION, "second-example.org", "", "8443", client=CLIENT_CERT,
                   fails=True)))),
        upstream_file="gateway-with-clientcertificate-validation.go"),
    GatewayConformanceTest(
        "GatewayFrontendClientCertificateValidationInsecureFallback",
        "Gateway's client certificate validation set to AllowInsecureFallback allows "
        "any HTTPS traffic.",
        ("Gateway", "HTTPRoute", "GatewayFrontendClientCertificateValidation",
         "GatewayFrontendClientCertificateValidationInsecureFallback"),
        ("tests/gateway-with-clientcertificate-validation-insecure-fallback.yaml",),
        (RoutesAccepted(GatewayRef(_FALLBACK), (
            NN("client-cert-validation-insecure-fallback-test"),
            NN("client-cert-validation-insecure-fallback-test-no-hostname")), use_port=False),
         resolved(NN("client-cert-validation-insecure-fallback-test"), NN(_FALLBACK)),
         resolved(NN("client-cert-validation-insecure-fallback-test-no-hostname"),
                  NN(_FALLBACK)),
         Subtest("Validate InsecureFrontendValidationMode status condition on the Gateway", (
             GatewayCondition(NN(_FALLBACK), Condition(
                 "InsecureFrontendValidationMode", "True", "ConfigurationChanged")),)),
         Subtest("Validate default TLS configuration", tuple(
             Subtest(f"Send request to the first listener {how} and validate that it is "
                     "passing", (_mtls(_FALLBACK, "example.org", V1, "443", client=client),))
             for how, client in (("with matching client certificate", CLIENT_CERT),
                                 ("with non-matching client certificate", PER_PORT_CLIENT_CERT),
                                 ("without client certificate", None)))),
         Subtest("Validate per port TLS configuration", tuple(
             Subtest(f"Send request to the second listener {how} and validate that it is "
                     "passing", (_mtls(_FALLBACK, "second-example.org", V2, "8443",
                                       client=client),))
             for how, client in (("with matching client certificate", PER_PORT_CLIENT_CERT),
                                 ("with non-matching client certificate", CLIENT_CERT),
                                 ("without client certificate", None))))),
        upstream_file="gateway-with-clientcertificate-validation-insecure-fallback.go"),
    GatewayConformanceTest(
        "GatewayFrontendInvalidDefaultClientCertificateValidation",
        "Invalid Gateway's default Client Certificate Validation Config should only "
        "affect HTTPS traffic",
        ("Gateway", "HTTPRoute", "GatewayFrontendClientCertificateValidation"),
        ("tests/gateway-invalid-default-frontend-client-certificate-validation.yaml",),
        # the address only, no status wait; its port is dropped (listeners on 80 and 443)
        (GatewayAddress(GatewayRef(_INVALID_DEFAULT)),
         Subtest("Validate tls configuration does not impact HTTP listener", (
             ListenersConditions(NN(_INVALID_DEFAULT), READY, ("http",)),
             GatewayExchanges(GatewayRef(_INVALID_DEFAULT), (to("/", V1, host="example.org",
                                                                status=200),), port="80"))),
         Subtest("Validate that invalid default configuration is impacting HTTPS listener", (
             ListenersConditions(NN(_INVALID_DEFAULT), _invalid_ca("InvalidCACertificateRef"),
                                 ("https",)),
             _mtls(_INVALID_DEFAULT, "example.org", "", "443", client=None, fails=True)))),
        upstream_file="gateway-invalid-default-frontend-client-certificate-validation.go"),
    GatewayConformanceTest(
        "GatewayInvalidFrontendClientCertificateValidation",
        "Gateway's should reject invalid Client Certificate Validation Config",
        ("Gateway", "HTTPRoute", "ReferenceGrant", "GatewayFrontendClientCertificateValidation"),
        ("tests/gateway-with-invalid-clientcertificate-validation.yaml",),
        (Subtest("Validate status for invalid client certificate configuration", tuple(
            Subtest(name, (ListenersConditions(_INVALID, conditions, (listener,)),))
            for name, listener, conditions in (
                ("default valid configuration", "https", READY),
                ("unresolved reference", "https-unresolved",
                 _invalid_ca("InvalidCACertificateRef")),
                ("invalid kind", "https-invalid-kind", _invalid_ca("InvalidCACertificateKind")),
                ("reference grant missing", "https-grant-missing",
                 _invalid_ca("RefNotPermitted"))))),),
        upstream_file="gateway-with-invalid-clientcertificate-validation.go"),
)
