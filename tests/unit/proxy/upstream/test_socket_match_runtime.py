"""Per-host transport sockets at run time (cluster transport_socket_matches): each host's
pool is made with its own socket and never shared with a host resolved to another, and
`<match>.total_match_count` counts each resolution as Envoy 1.40 does."""

from __future__ import annotations

from typing import Any

from proxy.model.endpoint import Endpoint, Locality
from proxy.model.metadata import canonical_struct
from proxy.upstream.host_set import ResolvedEndpoint
from proxy.upstream.pools import PoolManager
from tests.integration.proxy.helpers import UPSTREAM_TLS
from tests.unit.proxy.upstream.builders import cluster, runtime

TLS = {"name": "envoy.transport_sockets.tls",
       "typed_config": {"@type": UPSTREAM_TLS, "sni": "mtls.test"}}
MATCHES = [{"name": "mtls", "match": {"tlsMode": "istio"}, "transport_socket": TLS}]
H2 = {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
    "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "explicit_http_config": {"http2_protocol_options": {}}}}


def _istio() -> Any:
    from google.protobuf import struct_pb2
    struct = struct_pb2.Struct()
    struct.update({"tlsMode": "istio"})
    return canonical_struct(struct)


def _endpoint(port: int, metadata: Any = None, address: str = "127.0.0.1") -> ResolvedEndpoint:
    return ResolvedEndpoint(Endpoint(address, port, socket_metadata=metadata), address,
                            Locality())


def test_total_match_count_per_resolved_host() -> None:
    rt, stats = runtime(cluster(type="EDS", eds_cluster_config={},
                                transport_socket_matches=MATCHES))
    rt.set_endpoints([_endpoint(1, _istio()), _endpoint(2)])
    assert stats.counter("cluster.backend.mtls.total_match_count").value == 1
    assert stats.counter("cluster.backend.default.total_match_count").value == 1
    # Envoy builds a host for every endpoint of an update, kept or not, and resolves each.
    rt.set_endpoints([_endpoint(1, _istio()), _endpoint(2)])
    assert stats.counter("cluster.backend.mtls.total_match_count").value == 2


def test_each_host_gets_its_own_socket_and_pool() -> None:
    rt, _ = runtime(cluster(type="EDS", eds_cluster_config={},
                            transport_socket_matches=MATCHES,
                            typed_extension_protocol_options=H2))
    rt.set_endpoints([_endpoint(1, _istio()), _endpoint(2)])
    mtls_host, plain_host = sorted(rt.hosts, key=lambda host: host.port)
    assert rt.socket_for(mtls_host).name == "mtls"
    manager = PoolManager()
    mtls_pool = manager.pool_for(rt, mtls_host)
    plain_pool = manager.pool_for(rt, plain_host)
    assert mtls_pool.ssl_context is not None and mtls_pool.server_hostname == "mtls.test"
    assert plain_pool.ssl_context is None
    manager.close()


def test_a_host_whose_metadata_changes_gets_a_new_pool() -> None:
    """Same address and port, new metadata from EDS: the HTTP/2 connection made with the old
    socket is not reused for the new one (Envoy re-resolves the host's socket factory, and
    pools are keyed by it)."""
    rt, _ = runtime(cluster(type="EDS", eds_cluster_config={},
                            transport_socket_matches=MATCHES,
                            typed_extension_protocol_options=H2))
    rt.set_endpoints([_endpoint(1)])
    manager = PoolManager()
    host = rt.hosts[0]
    plain_pool = manager.pool_for(rt, host)
    rt.set_endpoints([_endpoint(1, _istio())])
    assert rt.hosts[0] is host
    mtls_pool = manager.pool_for(rt, host)
    assert mtls_pool is not plain_pool and mtls_pool.ssl_context is not None
    manager.close()


def _checked(**check: Any) -> Any:
    return cluster(type="EDS", eds_cluster_config={}, transport_socket_matches=MATCHES,
                   health_checks=[{"timeout": "1s", "interval": "1s",
                                   "unhealthy_threshold": 1, "healthy_threshold": 1,
                                   "tcp_health_check": {}, **check}])


def test_health_checks_use_each_hosts_socket_or_the_criteria_match() -> None:
    """Envoy's checks connect with the host's own socket; with
    transport_socket_match_criteria, with the match those criteria select instead
    (HostImpl::createHealthCheckConnection)."""
    import random

    from proxy.upstream.health.runner import HealthCheckRunner

    rt, _ = runtime(_checked())
    rt.set_endpoints([_endpoint(1, _istio()), _endpoint(2)])
    mtls_host, plain_host = sorted(rt.hosts, key=lambda host: host.port)
    runner = HealthCheckRunner(rt, random.Random(1))
    probe = runner._tls(mtls_host)
    assert probe is not None and probe.sni == "mtls.test"
    assert runner._tls(plain_host) is None
    rt, _ = runtime(_checked(transport_socket_match_criteria={"tlsMode": "istio"}))
    rt.set_endpoints([_endpoint(2)])
    assert HealthCheckRunner(rt, random.Random(1))._tls(rt.hosts[0]) is not None


def test_an_http_check_follows_a_hosts_new_socket() -> None:
    """A kept host relabelled by EDS: its HTTP checker's next connection uses the new socket."""
    import asyncio
    import random

    from proxy.upstream.health.runner import HealthCheckRunner

    rt, _ = runtime(cluster(type="EDS", eds_cluster_config={}, transport_socket_matches=MATCHES,
                            health_checks=[{"timeout": "1s", "interval": "1s",
                                            "unhealthy_threshold": 1, "healthy_threshold": 1,
                                            "http_health_check": {"path": "/"}}]))
    rt.set_endpoints([_endpoint(1)])
    host = rt.hosts[0]
    runner = HealthCheckRunner(rt, random.Random(1))
    prober: Any = runner._prober(host)
    assert prober.tls is None
    rt.set_endpoints([_endpoint(1, _istio())])
    asyncio.run(runner._follow_socket(host, prober))
    assert prober.tls is not None and prober.tls.sni == "mtls.test"
